"""Why DINO collapses or learns: its teacher's targets over the first training steps.

DINO (Caron et al., ICCV 2021) avoids collapse only while the centred, sharpened teacher output
P_t = softmax((g_t(x) - c) / tau_t) is both peaked for each image (sharpening) and spread over
many prototypes across the batch (centring), and while it tells an image's two views apart from
other images'; otherwise the student's best answer is the batch average and its output becomes
the same for every image. This script trains DINO with the repository's params (plus ``-S``
overrides) and, every ``--every`` steps, shows on the training batch:

- ``H(P_t)``: the teacher's mean entropy per image (ln K: uniform, 0: one-hot);
- ``H(mean P_t)``: the entropy of the batch-mean teacher output (0: one prototype for all);
- ``same`` / ``other``: the mean cosine between the centred teacher outputs of an image's two
  global views, and between those of two different images;
- ``std x sqrt(d)``: the collapse diagnostic of the student's bottleneck (0: collapsed).

The teacher's views are drawn for the probe, so the run's random stream (and its numbers) differ
slightly from a `pretrain` run with the same params.

    python benchmarks/dino_probe.py --data data/digits-plain --steps 150
    python benchmarks/dino_probe.py --data data/digits-plain -S teacher_temp=0.07 -S momentum=0.996
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from selfsup.io import write_json
from selfsup.loop import Optimisation, collapse_std
from selfsup.params import load_config, parse_overrides
from selfsup.train import ImagePretraining


def entropy(p: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in nats over the last dimension."""
    return -(p * p.clamp_min(1e-12).log()).sum(dim=-1)


@torch.no_grad()
def teacher_targets(trainer: ImagePretraining, step: int) -> dict[str, float]:
    """The teacher's statistics on the two global views of ``step``'s batch, before it trains on them."""
    method = trainer.method
    index = trainer.batch_indices(step)
    views = trainer.views(trainer.images[index], trainer.device, index)
    n = views.large[0].shape[0]
    logits = method.teacher_head(method.teacher_backbone(torch.cat(views.large))).float() - method.center
    p = F.softmax(logits / method.teacher_temp(step), dim=-1)
    a, b = F.normalize(logits[:n], dim=-1), F.normalize(logits[n:], dim=-1)
    return {"H(P_t)": entropy(p).mean().item(), "H(mean P_t)": entropy(p.mean(dim=0)).item(),
            "same": (a * b).sum(-1).mean().item(), "other": (a * b.roll(1, dims=0)).sum(-1).mean().item()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data/images"), help="a prepared image dataset")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--every", type=int, default=25)
    parser.add_argument("-S", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=None, help="JSON record of the rows (BENCHMARKS.md reads it)")
    args = parser.parse_args()
    rows = []
    cfg = load_config(args.params, overrides=parse_overrides(["method=dino", *args.overrides]))
    trainer = ImagePretraining(cfg, args.data)
    opt = Optimisation(trainer.device, cfg.train.amp, cfg.train.amp_dtype, cfg.train.clip_grad_norm)
    print(f"K = {cfg.knobs.out_dim} (ln K = {math.log(cfg.knobs.out_dim):.2f}); overrides: "
          f"{' '.join(args.overrides) or 'none'}")
    print("| step | loss | H(P_t) | H(mean P_t) | same | other | std x sqrt(d) |")
    print("|---|---|---|---|---|---|---|")
    for step in range(args.steps):
        stats = teacher_targets(trainer, step)
        out = trainer.train_step(step, opt)
        opt.end_step()
        loss, std = out.losses["loss"], collapse_std(out.embedding)
        scaled = std.item() * math.sqrt(out.embedding.shape[1])
        if step % args.every == 0 or step == args.steps - 1:
            rows.append({"step": step, "loss": loss.item(), **stats,
                         "std_x_sqrt_d": scaled})
            print(f"| {step} | {loss.item():.3f} | {stats['H(P_t)']:.2f} | {stats['H(mean P_t)']:.2f} | "
                  f"{stats['same']:.2f} | {stats['other']:.2f} | {scaled:.2f} |",
                  flush=True)
    if args.out:
        write_json(args.out, {"overrides": args.overrides, "steps": args.steps, "out_dim": cfg.knobs.out_dim,
                              "rows": rows})


if __name__ == "__main__":
    main()

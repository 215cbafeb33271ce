"""Framework overhead and augmentation throughput, measured side by side in one run.

1. Pretraining steps through the generic loop (``selfsup.train.image_loop(...).fit``) (schedules, progress bar, logging,
   collapse diagnostic, NaN check) against a bare PyTorch loop with the same model, loss, batch,
   augmentation and optimiser. Rounds alternate between the two; the ratio of medians is printed.
2. Augmentation throughput of the ``batched`` (kornia) and ``per_sample`` (torchvision v2 loop)
   view backends, against the rate at which the model consumes images (forward + backward).

    python benchmarks/bench_step.py                     # digits-cpu preset, SimCLR
    python benchmarks/bench_step.py --method barlow --steps 30 --rounds 7
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import torch

from selfsup.augment.views import ViewGenerator
from selfsup.config import Config
from selfsup.data.prepare import prepare_images
from selfsup.data.store import images_tensor, load_meta, pretraining_images
from selfsup.io import write_json
from selfsup.methods import DataInfo, build_method
from selfsup.optim import build_optimizer
from selfsup.params import load_config
from selfsup.schedules import scaled_lr
from selfsup.train import image_loop


def bare_loop(cfg: Config, data_dir: Path, steps: int) -> float:
    """Seconds for ``steps`` steps of the plainest loop doing the same work."""
    torch.manual_seed(cfg.seed)
    meta = load_meta(data_dir)
    images = images_tensor(pretraining_images(data_dir))
    views = ViewGenerator(cfg.views, meta["mean"], meta["std"])
    model = build_method(cfg, DataInfo.from_meta(len(images), meta)).to(memory_format=torch.channels_last)
    opt = build_optimizer(model, cfg.optim, scaled_lr(cfg.lr, cfg.batch_size, cfg.optim.lr_scaling))
    device = torch.device("cpu")
    start = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(len(images), (cfg.batch_size,))
        v = views(images[idx], device).map(lambda x: x.contiguous(memory_format=torch.channels_last))
        loss = model(v, idx).losses["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    loss.item()
    return time.perf_counter() - start


def framework_loop(cfg: Config, data_dir: Path, steps: int) -> float:
    with tempfile.TemporaryDirectory() as ck:
        loop = image_loop(cfg, data_dir, Path(ck))
        start = time.perf_counter()
        loop.fit(until=steps)
        return time.perf_counter() - start


def augmentation_rates(cfg: Config, data_dir: Path, repeats: int = 5) -> dict[str, float]:
    """Images per second: each backend producing two views, and the model consuming them."""
    meta = load_meta(data_dir)
    batch = images_tensor(pretraining_images(data_dir)[: cfg.batch_size])
    rates = {}
    for backend in ("batched", "per_sample"):
        gen = ViewGenerator(dataclasses.replace(cfg.views, backend=backend), meta["mean"], meta["std"])
        gen(batch, torch.device("cpu"))
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            gen(batch, torch.device("cpu"))
            times.append(time.perf_counter() - t)
        rates[f"views_{backend}"] = len(batch) / statistics.median(times)
    model = build_method(cfg, DataInfo.from_meta(len(batch), meta)).to(memory_format=torch.channels_last)
    views = ViewGenerator(cfg.views, meta["mean"], meta["std"])(batch, torch.device("cpu")).map(
        lambda v: v.contiguous(memory_format=torch.channels_last))
    times = []
    for i in range(repeats + 1):
        t = time.perf_counter()
        model(views, torch.arange(len(batch))).losses["loss"].backward()
        if i:
            times.append(time.perf_counter() - t)
    rates["model_fwd_bwd"] = len(batch) / statistics.median(times)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--method", default=None)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/records/bench_step.json"),
                        help="JSON record of the results (BENCHMARKS.md is generated from it)")
    args = parser.parse_args()
    overrides = {"train": {"checkpoint_every": 10**9}, **({"method": args.method} if args.method else {})}
    cfg = load_config(args.params, overrides)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, method={cfg.method}, "
          f"batch={cfg.batch_size}, view size={cfg.views.size}, backbone={cfg.backbone.name}")
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "images"
        prepare_images(cfg, data_dir)
        framework_loop(cfg, data_dir, 3)
        bare_loop(cfg, data_dir, 3)
        fw, bare = [], []
        for r in range(args.rounds):
            fw.append(framework_loop(cfg, data_dir, args.steps))
            bare.append(bare_loop(cfg, data_dir, args.steps))
            print(f"round {r}: framework {fw[-1] / args.steps * 1e3:.1f} ms/step, "
                  f"bare {bare[-1] / args.steps * 1e3:.1f} ms/step")
        ratio = statistics.median(fw) / statistics.median(bare)
        print(f"median ms/step: framework {statistics.median(fw) / args.steps * 1e3:.1f}, "
              f"bare {statistics.median(bare) / args.steps * 1e3:.1f}; framework/bare = {ratio:.3f} "
              f"(overhead {100 * (ratio - 1):+.1f}%)")
        rates = augmentation_rates(cfg, data_dir)
        print(f"images/s: batched views {rates['views_batched']:.0f}, per-sample views "
              f"{rates['views_per_sample']:.0f} (batched/per-sample = "
              f"{rates['views_batched'] / rates['views_per_sample']:.1f}x), model fwd+bwd "
              f"{rates['model_fwd_bwd']:.0f}")
    write_json(args.out, {"method": cfg.method, "batch_size": cfg.batch_size, "view_size": cfg.views.size,
                          "steps": args.steps, "rounds": args.rounds, "threads": torch.get_num_threads(),
                          "torch": torch.__version__, "framework_ms_per_step": statistics.median(fw) / args.steps * 1e3,
                          "bare_ms_per_step": statistics.median(bare) / args.steps * 1e3, "ratio": ratio,
                          "images_per_s": rates})


if __name__ == "__main__":
    main()

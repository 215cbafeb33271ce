"""How much of each method's frozen features is the background photo, and how much the digit.

digits-bg pastes each digit on one of ``background_pool`` photo crops (64 per split), and both
views of an image share that crop. This probe asks the frozen backbone of each pretrained run two
questions on the training images, with a linear probe and kNN trained on one half of the digit
scans and tested on the other half (scan-disjoint, so a digit scan is never in both):

- which background crop is this (64 classes, chance 1.6%)?
- which digit is this (10 classes, chance 10%)?

The background identity of every image is recovered by rebuilding the dataset from its seed and
recording which crop each composite drew; the rebuilt images are checked against the prepared
ones byte for byte first.

    python benchmarks/background_probe.py --models results/paper/models --names simclr,byol,moco

The rows are written to ``--out`` (a JSON record that BENCHMARKS.md is generated from) and printed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

import selfsup.data.digits_bg as digits_bg
from selfsup.augment.views import EvalTransform
from selfsup.data.store import ImageSplit, load_meta, load_split
from selfsup.eval.evaluate import load_model, probe
from selfsup.eval.features import extract_features
from selfsup.io import write_json
from selfsup.params import load_config


class _Recorder:
    """Wraps the background pool so the index each composite draws is recorded; draws are unchanged."""

    def __init__(self, pool: np.ndarray, drawn: list[int]) -> None:
        self.pool, self.drawn = pool, drawn

    def __len__(self) -> int:
        return len(self.pool)

    def __getitem__(self, index: int) -> np.ndarray:
        self.drawn.append(int(index))
        return self.pool[index]


def background_ids(train: ImageSplit, params: Path) -> np.ndarray:
    """The background-crop index of every image of ``train``, the prepared digits-bg training split."""
    cfg = load_config(params)
    drawn: list[int] = []
    original = digits_bg._composite

    def recording(scan, backgrounds, rng, spec):
        return original(scan, _Recorder(backgrounds, drawn), rng, spec)

    digits_bg._composite = recording
    try:
        splits = digits_bg.build_digits_bg(cfg.seed, cfg.data.digits_bg)
    finally:
        digits_bg._composite = original
    if not np.array_equal(splits["train"].images, train.images):
        raise SystemExit("the rebuilt digits-bg differs from the prepared one: prepare it with this params file")
    return np.asarray(drawn[: len(train.images)])


def probe_run(model: Path, random_init: bool, train: ImageSplit, meta: dict, bg: np.ndarray) -> dict[str, float]:
    """Background and digit accuracy of a run's frozen extractor (or of the same one randomly initialised)."""
    extractor, view_size, cfg = load_model(model, random_init=random_init)
    feats = extract_features(extractor, train.images, EvalTransform(view_size, meta["mean"], meta["std"]),
                             torch.device("cpu"), cfg.eval.batch_size)
    scans = np.unique(train.source_ids)
    first = np.isin(train.source_ids, np.random.default_rng(0).permutation(scans)[: len(scans) // 2])
    a, b = torch.from_numpy(np.flatnonzero(first)), torch.from_numpy(np.flatnonzero(~first))
    background = probe(feats[a], bg[a.numpy()], feats[b], bg[b.numpy()], int(bg.max()) + 1, cfg)
    digit = probe(feats[a], train.labels[a.numpy()], feats[b], train.labels[b.numpy()], len(meta["classes"]), cfg)
    return {"bg_linear": background["linear_top1"], "bg_knn": background["knn_top1"],
            "digit_linear": digit["linear_top1"], "digit_knn": digit["knn_top1"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=Path("results/paper/models"),
                        help="a folder of <run>/model.pt (the paper pipeline's)")
    parser.add_argument("--names", default="simclr,invaspread,instdisc,moco,byol,simsiam,barlow,swav,dino")
    parser.add_argument("--data", type=Path, default=Path("data/images"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/records/background_probe.json"))
    args = parser.parse_args()
    train, meta = load_split(args.data, "train", mmap=False), load_meta(args.data)
    bg = background_ids(train, args.params)
    names = args.names.split(",")
    model = {name: args.models / name / "model.pt" for name in names}
    rows = [("random init (small CNN)", probe_run(model[names[0]], True, train, meta, bg))]
    for name in names:
        rows.append((name, probe_run(model[name], False, train, meta, bg)))
        print(f"{name}: {rows[-1][1]}", flush=True)
    write_json(args.out, {"rows": [{"name": name, **m} for name, m in rows]})
    print("\n| frozen backbone | background linear % | background kNN % | digit linear % | digit kNN % |")
    print("|---|---|---|---|---|")
    for name, m in rows:
        print(f"| {name} | {100 * m['bg_linear']:.1f} | {100 * m['bg_knn']:.1f} | {100 * m['digit_linear']:.1f} "
              f"| {100 * m['digit_knn']:.1f} |")


if __name__ == "__main__":
    main()

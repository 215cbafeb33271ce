"""The ``prepare_images`` stage's library function: materialise the chosen dataset (with its
generative factors where it has them: digits-bg)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from selfsup.config import Config
from selfsup.data.digits_bg import CLASSES, FACTORS, build_digits_bg
from selfsup.data.store import ImageSplit, load_meta, save_dataset
from selfsup.schema import to_dict


def channel_stats(images: np.ndarray, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images (N, H, W, 3), in [0, 1] units."""
    total = np.zeros(3)
    total_sq = np.zeros(3)
    count = 0
    for start in range(0, len(images), chunk):
        x = np.asarray(images[start : start + chunk], dtype=np.float64) / 255.0
        total += x.sum(axis=(0, 1, 2))
        total_sq += (x**2).sum(axis=(0, 1, 2))
        count += x.shape[0] * x.shape[1] * x.shape[2]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-12))
    return [round(float(m), 6) for m in mean], [round(float(s), 6) for s in std]


def load_splits(cfg: Config) -> tuple[list[str], dict[str, ImageSplit]]:
    """(class names, splits) of the dataset named by ``cfg.dataset``."""
    if cfg.dataset == "digits-bg":
        return CLASSES, build_digits_bg(cfg.seed, cfg.data.digits_bg)
    from selfsup.data import real

    return real.load(cfg)


def prepare_images(cfg: Config, out_dir: Path) -> dict:
    """Write the dataset to ``out_dir`` in the prepared format; returns its meta."""
    classes, splits = load_splits(cfg)
    mean, std = channel_stats(splits["train"].images)
    extra = {"mean": mean, "std": std, "seed": cfg.seed, "data": to_dict(cfg.data)}
    factors = FACTORS if cfg.dataset == "digits-bg" else None
    save_dataset(out_dir, cfg.dataset, classes, splits, extra=extra, factors=factors)
    return load_meta(out_dir)

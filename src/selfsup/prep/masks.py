"""The ``segment`` and ``backgrounds`` stages' work: masks of the pretraining images, their
quality against ground truth, and the background bank.

``data/masks/`` holds ``masks.npy`` (bool (N, H, W), the pretraining images in the order of
:func:`selfsup.data.store.pretraining_images`) and ``meta.json``. ``data/backgrounds/`` holds
``meta.json`` and, only when a background augmentation is on, ``masks.npy`` and
``backgrounds.npy`` (uint8 (N, H, W, 3)), so switching augmentation off leaves ``pretrain``
with an input that no longer changes with the masks.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from selfsup.config import Config
from selfsup.data.store import load_meta, load_split, pretraining_images
from selfsup.errors import DataError
from selfsup.io import replace_folder
from selfsup.prep.backgrounds import inpaint_backgrounds
from selfsup.prep.segment import estimate_masks, mask_iou


def ground_truth_masks(data_dir: Path) -> np.ndarray | None:
    """Ground-truth masks of the pretraining images, or None where any of them lacks one."""
    meta = load_meta(data_dir)
    parts = []
    for split in ("train", "unlabeled"):
        if split in meta["splits"]:
            masks = load_split(data_dir, split).masks
            if masks is None:
                return None
            parts.append(np.asarray(masks))
    return np.concatenate(parts)


def segment(cfg: Config, data_dir: Path, out_dir: Path, progress: bool = True) -> dict:
    """Write the masks of every pretraining image to ``out_dir``; returns the stage's metrics."""
    images = pretraining_images(data_dir)
    truth = ground_truth_masks(data_dir)
    start = time.perf_counter()
    masks = estimate_masks(images, cfg.segment, truth, progress=progress)
    seconds = time.perf_counter() - start
    metrics: dict = {"source": cfg.segment.source, "grabcut": cfg.segment.grabcut, "n_images": int(len(masks)),
                     "foreground_fraction": float(masks.mean()), "seconds": seconds}
    if truth is not None:
        iou = mask_iou(masks, truth)
        metrics.update(mean_iou=float(iou.mean()), median_iou=float(np.median(iou)),
                       fraction_iou_at_least_0_5=float((iou >= 0.5).mean()),
                       true_foreground_fraction=float(truth.mean()))

    def fill(tmp: Path) -> None:
        np.save(tmp / "masks.npy", masks)
        (tmp / "meta.json").write_text(json.dumps({"source": cfg.segment.source, "n_images": int(len(masks)),
                                                   "shape": list(masks.shape)}, indent=2) + "\n")

    replace_folder(out_dir, fill)
    return metrics


def load_masks(masks_dir: Path, n_images: int, shape: tuple[int, int]) -> np.ndarray:
    """The ``segment`` stage's masks, checked against the pretraining images they belong to."""
    path = Path(masks_dir) / "masks.npy"
    try:
        masks = np.load(path)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"masks {path} are missing or unreadable ({exc}); run `dvc repro segment`") from exc
    if masks.shape != (n_images, *shape):
        raise DataError(f"masks {path} have shape {masks.shape} but the pretraining images are "
                        f"{(n_images, *shape)}; rerun `dvc repro segment`")
    return masks.astype(bool)


def build_backgrounds(cfg: Config, data_dir: Path, masks_dir: Path, out_dir: Path, progress: bool = True) -> dict:
    """Write the background bank (or, with every background augmentation off, only a marker)."""
    if not cfg.views.background.enabled:
        replace_folder(out_dir, lambda tmp: (tmp / "meta.json").write_text(json.dumps({"enabled": False}) + "\n"))
        return {"enabled": False}
    images = pretraining_images(data_dir)
    masks = load_masks(masks_dir, len(images), images.shape[1:3])
    backgrounds = inpaint_backgrounds(images, masks, cfg.segment.inpaint_radius, cfg.segment.dilate, progress)
    source = json.loads((Path(masks_dir) / "meta.json").read_text()).get("source", "unknown")
    meta = {"enabled": True, "source": source, "n_images": int(len(images))}

    def fill(tmp: Path) -> None:
        np.save(tmp / "masks.npy", masks)
        np.save(tmp / "backgrounds.npy", backgrounds)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")

    replace_folder(out_dir, fill)
    return meta

"""The prepared on-disk image format every later stage reads.

A prepared dataset is one folder::

    meta.json                 {"dataset", "classes", "splits", "image_size", "has_masks", ...}
    <split>/images.npy        uint8 (N, H, W, 3)
    <split>/labels.npy        int64 (N,), -1 for unlabeled images
    <split>/masks.npy         bool (N, H, W), only where ground-truth foreground masks exist
    <split>/source_ids.npy    int64 (N,), the source item each image came from
    <split>/factors.npy       float32 (N, F), only where the generative factors are known

Splits are ``train`` (labeled, used for pretraining and for fitting probes), ``test`` and an
optional ``unlabeled`` (pretraining only). The folder is written to a temporary sibling and
renamed into place, so a reader never sees a half-written dataset.

Where every split has factors (digits-bg does; real datasets do not), ``meta.json`` describes
their columns under ``"factors"``: ``[{"name", "type", "values"}, ...]`` with ``type`` one of
``categorical``, ``discrete`` (ordered integers) or ``continuous``, and ``values`` the number of
distinct values over all splits (null for continuous factors).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from selfsup.errors import DataError
from selfsup.io import replace_folder

SPLITS = ("train", "test", "unlabeled")
FACTOR_TYPES = ("categorical", "discrete", "continuous")


@dataclass(frozen=True)
class Factor:
    """One column of a split's ``factors``: its name and type (one of :data:`FACTOR_TYPES`)."""

    name: str
    type: str

    def __post_init__(self) -> None:
        if self.type not in FACTOR_TYPES:
            raise DataError(f"factor {self.name!r} has type {self.type!r}; allowed: {list(FACTOR_TYPES)}")


@dataclass
class ImageSplit:
    """One split of a prepared dataset, as arrays."""

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray | None = None
    source_ids: np.ndarray | None = None
    factors: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.images.dtype != np.uint8:
            raise DataError(f"images must be uint8 (N, H, W, 3), got {self.images.dtype} {self.images.shape}")
        if len(self.labels) != n:
            raise DataError(f"{len(self.labels)} labels for {n} images")
        if self.masks is not None and self.masks.shape != self.images.shape[:3]:
            raise DataError(f"masks of shape {self.masks.shape} do not match images {self.images.shape}")
        if self.factors is not None and (self.factors.ndim != 2 or len(self.factors) != n):
            raise DataError(f"factors must be (N, F) with N = {n} images, got shape {self.factors.shape}")
        if self.source_ids is None:
            self.source_ids = np.arange(n, dtype=np.int64)


def _factor_meta(splits: dict[str, ImageSplit], factors: list[Factor] | None) -> list[dict] | None:
    """The meta entry describing the factor columns, or None unless every split has factors."""
    present = [s.factors for s in splits.values() if s.factors is not None]
    if not present:
        return None
    if factors is None:
        raise DataError("the splits carry factors but no factor names and types were given")
    for values in present:
        if values.shape[1] != len(factors):
            raise DataError(f"factors have {values.shape[1]} columns for {len(factors)} named factors "
                            f"{[f.name for f in factors]}")
    if len(present) < len(splits):
        return None
    return [{"name": f.name, "type": f.type,
             "values": None if f.type == "continuous"
             else int(len(np.unique(np.concatenate([v[:, k] for v in present]))))}
            for k, f in enumerate(factors)]


def save_dataset(root: Path, dataset: str, classes: list[str], splits: dict[str, ImageSplit],
                 extra: dict | None = None, factors: list[Factor] | None = None) -> None:
    """Write ``splits`` under ``root`` atomically (temp folder, then rename).

    ``factors`` names and types the columns of the splits' factor arrays; ``meta.json`` describes
    them only when every split has factors.
    """
    root = Path(root)
    unknown = set(splits) - set(SPLITS)
    if unknown:
        raise DataError(f"unknown split names {sorted(unknown)}; allowed: {list(SPLITS)}")
    first = next(iter(splits.values()))
    factor_meta = _factor_meta(splits, factors)
    meta = {
        "dataset": dataset,
        "classes": list(classes),
        "image_size": [int(first.images.shape[1]), int(first.images.shape[2])],
        "splits": {name: int(len(s.images)) for name, s in splits.items()},
        "has_masks": all(s.masks is not None for s in splits.values()),
        **({"factors": factor_meta} if factor_meta is not None else {}),
        **(extra or {}),
    }

    def fill(tmp: Path) -> None:
        for name, split in splits.items():
            d = tmp / name
            d.mkdir()
            np.save(d / "images.npy", split.images)
            np.save(d / "labels.npy", split.labels.astype(np.int64))
            np.save(d / "source_ids.npy", split.source_ids.astype(np.int64))
            if split.masks is not None:
                np.save(d / "masks.npy", split.masks.astype(bool))
            if split.factors is not None:
                np.save(d / "factors.npy", split.factors.astype(np.float32))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")

    replace_folder(root, fill)


def load_meta(root: Path) -> dict:
    path = Path(root) / "meta.json"
    if not path.is_file():
        raise DataError(f"no prepared dataset at {root} (missing {path}); run `dvc repro prepare_images`")
    return json.loads(path.read_text())


def load_split(root: Path, split: str, mmap: bool = True) -> ImageSplit:
    """Load one split; arrays are memory-mapped unless ``mmap`` is False."""
    meta = load_meta(root)
    if split not in meta["splits"]:
        raise DataError(f"dataset at {root} has no split {split!r}; it has {sorted(meta['splits'])}")
    d = Path(root) / split
    mode = "r" if mmap else None
    try:
        masks = np.load(d / "masks.npy", mmap_mode=mode) if (d / "masks.npy").exists() else None
        factors = np.load(d / "factors.npy") if (d / "factors.npy").exists() else None
        return ImageSplit(
            images=np.load(d / "images.npy", mmap_mode=mode),
            labels=np.load(d / "labels.npy"),
            masks=masks,
            source_ids=np.load(d / "source_ids.npy"),
            factors=factors,
        )
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"prepared split {d} is unreadable ({exc}); rerun `dvc repro -f prepare_images`") from exc


def load_factors(root: Path, split: str) -> tuple[np.ndarray, list[dict]] | None:
    """(factors float32 (N, F), their meta entries) of one split, or None where the dataset has none."""
    meta = load_meta(root)
    if "factors" not in meta:
        return None
    factors = load_split(root, split).factors
    if factors is None:
        raise DataError(f"meta.json of {root} lists factors but {split}/factors.npy is missing; "
                        "rerun `dvc repro -f prepare_images`")
    if factors.shape[1] != len(meta["factors"]):
        raise DataError(f"{split}/factors.npy has {factors.shape[1]} columns but meta.json of {root} names "
                        f"{len(meta['factors'])}; rerun `dvc repro -f prepare_images`")
    return factors, meta["factors"]


def images_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) array -> contiguous uint8 tensor (N, 3, H, W)."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(images).transpose(0, 3, 1, 2)))


def pretraining_images(root: Path) -> np.ndarray:
    """The images pretraining may see: ``train`` plus ``unlabeled`` when present (labels unused)."""
    meta = load_meta(root)
    parts = [load_split(root, "train").images]
    if "unlabeled" in meta["splits"]:
        parts.append(load_split(root, "unlabeled").images)
    return np.concatenate(parts) if len(parts) > 1 else np.asarray(parts[0])

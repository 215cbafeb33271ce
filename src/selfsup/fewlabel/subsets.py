"""Class-balanced labeled subsets of the train split, written as index files.

SimCLR (Chen et al. 2020, Sec. 4.2) and SimCLR v2 fine-tune on published lists of 1% and 10% of the
ImageNet train images, drawn class-balanced, so that every paper uses the same images. Here the
``subsets`` stage draws such lists from the prepared train split, one text file per fraction with one
train-split index per line (``<percent>pct.txt``, e.g. ``1pct.txt``), and every few-label arm
(fine-tuning, distillation, self-training, the from-scratch baselines) reads its labels through them.

Class ``c`` with ``n_c`` images keeps ``round(fraction * n_c)`` of them (halves rounded up), drawn
without replacement by a generator seeded with ``subsets.seed``; a fraction that would leave some
class with no label is a :class:`ConfigError` naming the fraction and the smallest class.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from selfsup.data.store import load_split
from selfsup.errors import ConfigError, DataError
from selfsup.io import atomic_write_text, write_json


def per_class_count(fraction: float, n: int) -> int:
    """Images kept of a class of ``n``: ``fraction * n`` rounded half up."""
    return math.floor(fraction * n + 0.5)


def balanced_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of ``fraction`` of every class in ``labels`` (see the module docstring)."""
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"label fraction {fraction} must be in (0, 1]; e.g. 0.01 or 0.1 as in SimCLR")
    labels = np.asarray(labels)
    classes, sizes = np.unique(labels, return_counts=True)
    if len(classes) == 0:
        raise DataError("the train split has no labeled image to draw a subset from")
    smallest = int(sizes.min())
    if per_class_count(fraction, smallest) == 0:
        raise ConfigError(f"label fraction {fraction} leaves a class without a label: the smallest class has "
                          f"{smallest} train images (class {int(classes[sizes.argmin()])}); use a fraction of at "
                          f"least {0.5 / smallest:.3g}")
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:per_class_count(fraction, n)]
              for c, n in zip(classes, sizes, strict=True)]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def subset_name(fraction: float) -> str:
    """The file stem of a fraction: 0.01 -> ``1pct``, 0.1 -> ``10pct``, 0.005 -> ``0.5pct``."""
    return f"{100 * fraction:.6g}pct"


def subset_path(folder: Path, fraction: float) -> Path:
    return Path(folder) / f"{subset_name(fraction)}.txt"


def write_subsets(labels: np.ndarray, fractions: tuple[float, ...], seed: int, folder: Path) -> dict:
    """Write one index file per fraction to ``folder`` (atomically) and return their summary."""
    labels = np.asarray(labels)
    if (labels < 0).any():
        raise DataError(f"the train split has {int((labels < 0).sum())} images without a label; subsets are "
                        f"drawn from a fully labeled train split")
    subsets = {f: balanced_subset(labels, f, seed) for f in fractions}  # every fraction checked before writing
    summary = {"seed": seed, "train_images": len(labels), "subsets": {}}
    for fraction, index in subsets.items():
        path = subset_path(folder, fraction)
        atomic_write_text(path, "".join(f"{i}\n" for i in index))
        counts = np.bincount(labels[index], minlength=int(labels.max()) + 1)
        summary["subsets"][subset_name(fraction)] = {"fraction": fraction, "file": path.name, "labels": len(index),
                                                     "per_class": counts.tolist()}
    write_json(Path(folder) / "subsets.json", summary)
    return summary


def read_subset(folder: Path, fraction: float, n_train: int) -> np.ndarray:
    """The train-split indices of ``fraction``'s subset, checked against the split's size."""
    path = subset_path(folder, fraction)
    if not path.is_file():
        raise ConfigError(f"no subset file {path} for label fraction {fraction}; add {fraction} to "
                          f"subsets.fractions and rerun `dvc repro subsets`")
    try:
        index = np.array([int(line) for line in path.read_text().split()], dtype=np.int64)
    except ValueError as exc:
        raise DataError(f"{path} is not a subset index file ({exc}); rerun `dvc repro subsets`") from exc
    if len(index) == 0 or index.min() < 0 or index.max() >= n_train or len(np.unique(index)) != len(index):
        raise DataError(f"{path} does not index the {n_train} train images (empty, out of range or repeated); "
                        f"rerun `dvc repro subsets`")
    return index


def run_subsets(data_dir: Path, fractions: tuple[float, ...], seed: int, out_dir: Path) -> dict:
    """Stage ``subsets``: the index files of ``fractions`` of the prepared train split."""
    return write_subsets(np.asarray(load_split(data_dir, "train").labels), fractions, seed, out_dir)

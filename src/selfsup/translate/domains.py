"""The translation task's two domains, built from prepared digits-bg, and the answers it is scored on.

Domain A is digits-bg (coloured digits on photographs), domain B the plain control (white digits on
black). Training is unpaired: the train split's source scans are shuffled with ``translate.split_seed``
and halved; A takes the prepared composites of the first half, B renders the second half's scans white
on black at fresh poses (side and position drawn as digits-bg draws them). No scan is in both, and no
A image has its B counterpart in the training data.

Every digits-bg composite records its scan, side and position (the generative factors), so the
test split's right answers are known: :func:`~selfsup.data.digits_bg.plain_digit` renders each A test
image's B counterpart (same scan, pose and size, white on black). Those are used only to score.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from selfsup.config.image import DigitsBgConfig
from selfsup.data.digits_bg import load_scans, plain_digit
from selfsup.data.store import images_tensor, load_factors, load_meta, load_split
from selfsup.errors import ConfigError, DataError
from selfsup.params import config_from_dict


@dataclass
class Domains:
    """uint8 (N, 3, H, W) images: ``a_train`` / ``b_train`` (unpaired, with labels for the judge only),
    ``a_test`` and its ground-truth translations ``b_test``, with the test labels and ground-truth masks."""

    a_train: torch.Tensor
    a_train_labels: np.ndarray
    b_train: torch.Tensor
    b_train_labels: np.ndarray
    a_test: torch.Tensor
    b_test: torch.Tensor
    test_labels: np.ndarray
    test_masks: np.ndarray

    def describe(self) -> dict[str, int]:
        return {"a_train": len(self.a_train), "b_train": len(self.b_train), "test": len(self.a_test)}


def _factor_columns(data_dir: Path, split: str) -> tuple[np.ndarray, dict[str, int]]:
    found = load_factors(data_dir, split)
    if found is None:
        raise DataError(f"{data_dir} has no generative factors for its {split} split; translation needs "
                        f"digits-bg prepared by this version (`dvc repro prepare_images` with dataset=digits-bg)")
    factors, meta = found
    return np.asarray(factors), {f["name"]: i for i, f in enumerate(meta)}


def render_plain(scan_ids: np.ndarray, factors: np.ndarray, columns: dict[str, int], scans: np.ndarray,
                 spec: DigitsBgConfig) -> np.ndarray:
    """White-on-black renderings of ``scans[scan_ids]`` at the recorded side and position, uint8 (N, S, S, 3)."""
    return np.stack([plain_digit(scans[i], int(f[columns["scale"]]), int(f[columns["x"]]), int(f[columns["y"]]), spec)
                     for i, f in zip(scan_ids, factors, strict=True)])


def fresh_poses(n: int, rng: np.random.Generator, spec: DigitsBgConfig) -> np.ndarray:
    """(n, 3) sides and top-left positions drawn as digits-bg draws them."""
    sizes = rng.integers(spec.digit_min, spec.digit_max + 1, size=n)
    ys = np.array([rng.integers(0, spec.image_size - s + 1) for s in sizes])
    xs = np.array([rng.integers(0, spec.image_size - s + 1) for s in sizes])
    return np.stack([sizes, xs, ys], axis=1)


def prepared_spec(data_dir: Path) -> DigitsBgConfig:
    """The digits-bg settings ``data_dir`` was prepared with (recorded in its meta.json)."""
    meta = load_meta(data_dir)
    if meta.get("dataset") != "digits-bg":
        raise DataError(f"{data_dir} holds {meta.get('dataset')!r}; translation runs on digits-bg, whose composites "
                        f"record how to render their plain counterparts. Point --data at digits-bg's prepared folder")
    try:
        return config_from_dict({"data": meta["data"]}).data.digits_bg
    except (KeyError, ConfigError) as exc:
        raise DataError(f"{data_dir}/meta.json does not record the digits-bg settings it was made with ({exc}); "
                        f"rerun `dvc repro -f prepare_images`") from exc


def build_domains(data_dir: Path, split_seed: int) -> Domains:
    """Domains A and B from the prepared digits-bg in ``data_dir``."""
    data_dir = Path(data_dir)
    spec = prepared_spec(data_dir)
    train, test = load_split(data_dir, "train"), load_split(data_dir, "test")
    test_factors, columns = _factor_columns(data_dir, "test")
    scans, _ = load_scans()
    train_ids = np.asarray(train.source_ids)
    rng = np.random.default_rng(split_seed)
    shuffled = rng.permutation(np.unique(train_ids))
    a_scans, b_scans = np.sort(shuffled[: len(shuffled) // 2]), np.sort(shuffled[len(shuffled) // 2:])
    a_index = np.flatnonzero(np.isin(train_ids, a_scans))
    b_ids = np.repeat(b_scans, spec.train_per_scan)
    poses = fresh_poses(len(b_ids), rng, spec)
    b_images = np.stack([plain_digit(scans[i], int(s), int(x), int(y), spec)
                         for i, (s, x, y) in zip(b_ids, poses, strict=True)])
    train_labels = np.asarray(train.labels)
    b_labels = np.array([train_labels[np.flatnonzero(train_ids == i)[0]] for i in b_ids], dtype=np.int64)
    b_test = render_plain(np.asarray(test.source_ids), test_factors, columns, scans, spec)
    if test.masks is None:
        raise DataError(f"{data_dir}'s test split has no masks; prepare digits-bg again")
    return Domains(
        a_train=images_tensor(np.asarray(train.images)[a_index]),
        a_train_labels=train_labels[a_index],
        b_train=images_tensor(b_images),
        b_train_labels=b_labels,
        a_test=images_tensor(np.asarray(test.images)),
        b_test=images_tensor(b_test),
        test_labels=np.asarray(test.labels),
        test_masks=np.asarray(test.masks, dtype=bool),
    )

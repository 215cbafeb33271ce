"""The translation task's domains: unpaired (disjoint scans), and ground truths that are exactly what the
plain-digit control renders for the same draws."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import SMALL_DIGITS_BG
from selfsup.config.image import DigitsBgConfig
from selfsup.data.digits_bg import build_digits_bg, load_scans, plain_digit
from selfsup.data.store import load_split
from selfsup.errors import DataError
from selfsup.translate.domains import build_domains, prepared_spec


def _assert_mask(grey: np.ndarray, masks: np.ndarray) -> None:
    """The mask is alpha > 0.5: grey levels above 128 are on it, below 127 off it (127/128 round alpha ~ 0.5)."""
    clear = (grey < 127) | (grey > 128)
    np.testing.assert_array_equal((grey > 128)[clear], np.asarray(masks)[clear])


def test_plain_digit_is_the_plain_control_of_the_same_draws() -> None:
    """For every test composite, rendering its scan at its recorded side and position white on black gives,
    byte for byte, the image the two controls (black background, white digit) draw for the same seed."""
    spec = DigitsBgConfig(**SMALL_DIGITS_BG)
    default = build_digits_bg(4, spec)["test"]
    plain = build_digits_bg(4, dataclasses.replace(spec, background="black", digit_colour="white"))["test"]
    scans, _ = load_scans()
    rendered = np.stack([plain_digit(scans[i], int(f[2]), int(f[3]), int(f[4]), spec)
                         for i, f in zip(default.source_ids, default.factors, strict=True)])
    np.testing.assert_array_equal(rendered, plain.images)
    _assert_mask(rendered[..., 0], default.masks)


def test_domains_are_unpaired_and_the_test_answers_known(small_digits_bg: Path) -> None:
    d = build_domains(small_digits_bg, split_seed=0)
    train = load_split(small_digits_bg, "train")
    ids = np.asarray(train.source_ids)
    assert len(d.a_train) + len(d.b_train) == len(ids)  # one composite per scan here: the scans are halved
    assert abs(len(d.a_train) - len(d.b_train)) <= 1
    # B images are white on black (R = G = B) and A images are the prepared composites, in order
    b = d.b_train.numpy()
    assert (b[:, 0] == b[:, 1]).all() and (b[:, 1] == b[:, 2]).all()
    test = load_split(small_digits_bg, "test")
    np.testing.assert_array_equal(d.a_test.permute(0, 2, 3, 1).numpy(), np.asarray(test.images))
    _assert_mask(d.b_test.numpy()[:, 0], test.masks)
    np.testing.assert_array_equal(d.test_labels, np.asarray(test.labels))
    # another split seed halves the scans differently; the same seed draws the same domains
    again, other = build_domains(small_digits_bg, 0), build_domains(small_digits_bg, 1)
    assert np.array_equal(again.b_train.numpy(), b)
    assert not np.array_equal(other.b_train_labels, d.b_train_labels)


def test_a_and_b_come_from_disjoint_scans(small_digits_bg: Path) -> None:
    """No scan feeds both domains: every B rendering's scan is absent from the A images' scans."""
    train = load_split(small_digits_bg, "train")
    ids = np.asarray(train.source_ids)
    rng = np.random.default_rng(0)
    shuffled = rng.permutation(np.unique(ids))
    half = len(shuffled) // 2
    d = build_domains(small_digits_bg, 0)
    a_index = np.flatnonzero(np.isin(ids, shuffled[:half]))
    np.testing.assert_array_equal(d.a_train.permute(0, 2, 3, 1).numpy(), np.asarray(train.images)[a_index])
    assert not set(shuffled[:half]) & set(shuffled[half:])
    assert len(d.b_train) == len(shuffled) - half


def test_other_data_is_refused_with_the_fix(tmp_path: Path, small_digits_bg: Path) -> None:
    assert prepared_spec(small_digits_bg) == DigitsBgConfig(**SMALL_DIGITS_BG)
    other = tmp_path / "other"
    other.mkdir()
    meta = json.loads((small_digits_bg / "meta.json").read_text())
    (other / "meta.json").write_text(json.dumps({**meta, "dataset": "cifar10"}))
    with pytest.raises(DataError, match="translation runs on digits-bg"):
        build_domains(other, 0)
    del meta["data"]
    (other / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="prepare_images"):
        build_domains(other, 0)

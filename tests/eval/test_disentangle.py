"""The beta-VAE score (Higgins et al. 2017) and MIG (Chen et al. 2018) on encoders whose answer is
known: the factors themselves, noise, a rotation that mixes two factors, and a hand-computed case."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

import numpy as np
import pytest

from selfsup.config.image import DigitsBgConfig
from selfsup.data.digits_bg import FACTORS, build_digits_bg
from selfsup.eval.disentangle import (
    CONSTANT,
    NO_FACTORS,
    UNSHARED,
    _pairs,
    betavae_score,
    discretise,
    disentanglement,
    mig,
)

# digits-bg's factors: digit, hue, scale, x, y, background
TYPES = ["categorical", "continuous", "discrete", "discrete", "discrete", "categorical"]
META = [{"name": n, "type": t} for n, t in zip(["digit", "hue", "scale", "x", "y", "background"], TYPES, strict=True)]


def _factors(n: int, seed: int = 0) -> np.ndarray:
    """Factors drawn as digits-bg draws them (32-pixel images, digits of side 14..28, 64 backgrounds)."""
    rng = np.random.default_rng(seed)
    scale = rng.integers(14, 29, n)
    return np.stack([rng.integers(0, 10, n), rng.random(n), scale, rng.integers(0, 33 - scale),
                     rng.integers(0, 33 - scale), rng.integers(0, 64, n)], 1).astype(np.float32)


def _standardised(f: np.ndarray) -> np.ndarray:
    return (f - f.mean(axis=0)) / f.std(axis=0)


def _plug_in_mi(a: np.ndarray, b: np.ndarray) -> float:
    """I(a; b) = sum_{x,y} p(x,y) log(p(x,y) / (p(x) p(y))) from counts, one term at a time."""
    n = len(a)
    joint, pa, pb = Counter(zip(a.tolist(), b.tolist(), strict=True)), Counter(a.tolist()), Counter(b.tolist())
    return sum(c / n * math.log(c * n / (pa[x] * pb[y])) for (x, y), c in joint.items())


def test_identity_encoder_scores_near_perfect() -> None:
    """Codes = factors (+ tiny noise). MIG stays below 1 for two reasons the estimator owns: the 64
    backgrounds share 20 code bins, so their gap is at most log 20 / log 64 = 0.72, less the
    plug-in bias; and x, y depend on scale (x <= 32 - scale), so each informs the other's top-2."""
    f = _factors(2000)
    codes = f + 1e-3 * np.random.default_rng(1).standard_normal(f.shape)
    beta = betavae_score(codes, f, TYPES, np.random.default_rng(2), n_train=1000, n_test=1000)
    assert beta["score"] >= 0.99 and beta["chance"] == pytest.approx(1 / 6) and beta["skipped"] == {}
    gap = mig(codes, f, TYPES)
    assert gap["mig"] >= 0.8
    assert gap["per_factor"][0] >= 0.95 and gap["per_factor"][1] >= 0.9  # digit, hue
    assert min(gap["per_factor"][k] for k in (2, 3, 4)) >= 0.8  # scale, x, y
    assert math.log(20) / math.log(64) - 0.15 <= gap["per_factor"][5] <= math.log(20) / math.log(64)


def test_encoder_ignoring_the_factors_scores_chance() -> None:
    """Codes independent of the factors: every z_diff has the same distribution whichever factor
    was fixed, so the classifier is right 1/6 of the time; 1,000 test points put one standard
    deviation at sqrt(1/6 * 5/6 / 1000) = 0.012, and 0.05 is four of them."""
    f = _factors(2000)
    codes = np.random.default_rng(3).standard_normal((2000, 10))
    beta = betavae_score(codes, f, TYPES, np.random.default_rng(4), n_train=1000, n_test=1000)
    assert abs(beta["score"] - 1 / 6) <= 0.05
    assert mig(codes, f, TYPES)["mig"] <= 0.05


def test_many_code_dimensions_that_ignore_the_factors_score_chance() -> None:
    """Training and test points draw their pairs from different images: with shared images, a
    classifier of 512 random dimensions learns which pairs fix which factor in this one dataset
    (0.26 on digits-bg's 1,078 test images) instead of anything about the codes."""
    f = _factors(1000, seed=11)
    codes = np.random.default_rng(12).standard_normal((1000, 512))
    beta = betavae_score(codes, f, TYPES, np.random.default_rng(13), n_train=1000, n_test=1000)
    assert abs(beta["score"] - 1 / 6) <= 0.05


def test_rotation_mixing_two_factors_lowers_mig() -> None:
    """Rotating the (standardised) scale and x dimensions by 45 degrees spreads each factor over two
    dimensions of equal information: their gaps collapse, the untouched factors' gaps stay, and
    the beta-VAE classifier now confuses 'scale fixed' with 'x fixed' at times (measured: 0.91)."""
    f = _factors(2000)
    z = _standardised(f)
    mixed = z.copy()
    mixed[:, 2], mixed[:, 3] = (z[:, 2] - z[:, 3]) / math.sqrt(2), (z[:, 2] + z[:, 3]) / math.sqrt(2)
    clean, blurred = mig(z, f, TYPES), mig(mixed, f, TYPES)
    assert clean["mig"] - blurred["mig"] >= 0.15
    assert blurred["per_factor"][2] <= 0.3 and blurred["per_factor"][3] <= 0.3
    assert clean["per_factor"][2] >= 0.8 and clean["per_factor"][3] >= 0.8
    for k in (0, 1, 5):
        assert blurred["per_factor"][k] == pytest.approx(clean["per_factor"][k], abs=0.05)
    beta = betavae_score(mixed, f, TYPES, np.random.default_rng(5), n_train=1000, n_test=1000)
    # no lower than if both were a coin flip, 4/6 + 2/6 * 1/2 = 0.83; the unmixed codes score 1.0
    assert 0.83 <= beta["score"] <= 0.95


def test_mig_by_hand() -> None:
    """Four images, v1 = (0, 0, 1, 1), v2 = (0, 1, 0, 1); z1 = v1 and z2 = v1 AND v2 = (0, 0, 0, 1).

    H(v1) = H(v2) = log 2. I(z1; v1) = log 2 and I(z1; v2) = 0 (independent). For z2:
    H(z2) = -(3/4) log(3/4) - (1/4) log(1/4) and H(z2 | v) = (1/2) log 2 for either factor, so
    I(z2; v) = H(z2) - (1/2) log 2 = (3/4) log(4/3) = 0.215762.
    gap(v1) = (log 2 - (3/4) log(4/3)) / log 2 = 1 - (3/4) log2(4/3) = 0.688722,
    gap(v2) = ((3/4) log(4/3) - 0) / log 2 = (3/4) log2(4/3) = 0.311278, MIG = 1/2 exactly.
    """
    v = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    z = np.array([[0, 0], [0, 0], [1, 0], [1, 1]], dtype=np.float64)
    i = 0.75 * math.log(4 / 3)
    assert i == pytest.approx(0.215762, abs=1e-6)
    assert _plug_in_mi(z[:, 1], v[:, 0]) == pytest.approx(i, rel=1e-12)
    for types in (["categorical", "categorical"], ["discrete", "continuous"]):
        out = mig(z, v, types, n_bins=2)
        assert out["per_factor"][0] == pytest.approx(1 - i / math.log(2), rel=1e-12)
        assert out["per_factor"][1] == pytest.approx(i / math.log(2), rel=1e-12)
        assert out["mig"] == pytest.approx(0.5, rel=1e-12)


def test_mig_matches_a_slow_loop() -> None:
    """MIG against Eq. 6 written out with a counting estimate of each I and H."""
    rng = np.random.default_rng(6)
    f = _factors(300, seed=7)
    codes = _standardised(f)[:, [1, 2, 0]] + 0.5 * rng.standard_normal((300, 3))
    n_bins = 8
    binned = [discretise(codes[:, j], "continuous", n_bins) for j in range(3)]
    gaps = []
    for k, t in enumerate(TYPES):
        v = discretise(f[:, k], t, n_bins)
        mi = sorted((_plug_in_mi(z, v) for z in binned), reverse=True)
        gaps.append((mi[0] - mi[1]) / _plug_in_mi(v, v))
    out = mig(codes, f, TYPES, n_bins=n_bins)
    assert [out["per_factor"][k] for k in range(6)] == pytest.approx(gaps, rel=1e-9)
    assert out["mig"] == pytest.approx(np.mean(gaps), rel=1e-9)


def test_discretise_bins_continuous_values_and_keeps_the_others() -> None:
    x = np.array([0.0, 0.24, 0.25, 0.74, 0.75, 1.0])
    np.testing.assert_array_equal(discretise(x, "continuous", 4), [0, 0, 1, 2, 3, 3])  # edges .25, .5, .75
    np.testing.assert_array_equal(discretise(np.array([7, 3, 7, 40]), "categorical", 2), [1, 0, 1, 2])
    assert len(set(discretise(np.full(3, 5.0), "continuous", 20).tolist())) == 1  # a constant is one bin


def test_pairs_share_the_value_and_are_two_images() -> None:
    """Each pair holds two different images with the same label; the lone image of label 2 is never
    drawn; within a group every first image and every partner is about equally likely."""
    labels = np.array([0, 1, 0, 1, 2, 0, 1, 1])
    first, second = _pairs(labels, 40000, np.random.default_rng(8))
    assert (labels[first] == labels[second]).all() and (first != second).all()
    assert 4 not in first.tolist() and 4 not in second.tolist()
    counts = np.bincount(first, minlength=8) / 40000
    assert np.allclose(counts[[0, 1, 2, 3, 5, 6, 7]], 1 / 7, atol=0.01)
    partners = Counter(second[first == 1].tolist())
    assert sorted(partners) == [3, 6, 7] and max(partners.values()) / min(partners.values()) < 1.15


def test_constant_and_unshared_factors_are_skipped() -> None:
    """Hue is 0 for every white digit: both metrics skip it and chance is 1/5. A factor that no two
    images share (one background per image) cannot be fixed by a pair, only MIG reads it."""
    f = _factors(1000)
    f[:, 1] = 0.0
    codes = f + 1e-3 * np.random.default_rng(9).standard_normal(f.shape)
    beta = betavae_score(codes, f, TYPES, np.random.default_rng(10), n_train=500, n_test=500)
    assert beta["skipped"] == {1: CONSTANT} and beta["chance"] == pytest.approx(1 / 5) and beta["score"] >= 0.95
    out = mig(codes, f, TYPES)
    assert out["skipped"] == {1: CONSTANT} and sorted(out["per_factor"]) == [0, 2, 3, 4, 5]
    f[:, 5] = np.arange(1000)
    beta = betavae_score(f, f, TYPES, np.random.default_rng(10), n_train=500, n_test=500)
    assert beta["skipped"] == {1: CONSTANT, 5: UNSHARED} and beta["chance"] == pytest.approx(1 / 4)
    assert 5 in mig(f, f, TYPES)["per_factor"]
    one_left = f[:, [0, 1]]
    assert betavae_score(one_left, one_left, TYPES[:2], np.random.default_rng(0))["score"] is None


def test_disentanglement_on_white_digits_names_factors() -> None:
    """The entry point on digits-bg itself (white digits), with codes = the recorded factors."""
    spec = DigitsBgConfig(image_size=16, digit_min=4, digit_max=10, train_per_scan=1, test_per_scan=1,
                          background_pool=5, digit_colour="white")
    f = build_digits_bg(0, spec)["test"].factors
    meta = [dataclasses.asdict(factor) for factor in FACTORS]
    out = disentanglement(f, f, meta, seed=0)
    assert out["skipped"] == {"hue": CONSTANT}
    assert sorted(out["mig_per_factor"]) == ["background", "digit", "scale", "x", "y"]
    assert out["betavae_score"] >= 0.95 and out["betavae_chance"] == pytest.approx(1 / 5)
    assert out["mig"] >= 0.8
    assert disentanglement(f, f, meta, seed=0) == out  # the seed fixes the pairs


def test_disentanglement_without_factors_gives_the_reason() -> None:
    codes = np.zeros((5, 3))
    assert disentanglement(codes, None, None, seed=0) == {"reason": NO_FACTORS}
    assert NO_FACTORS == "the dataset has no ground-truth factors"


def test_shape_errors_are_clear() -> None:
    f = _factors(10)
    with pytest.raises(ValueError, match="one row per image"):
        mig(np.zeros((9, 3)), f, TYPES)
    with pytest.raises(ValueError, match="6 factor columns for 5 factor types"):
        betavae_score(np.zeros((10, 3)), f, TYPES[:5], np.random.default_rng(0))
    with pytest.raises(ValueError, match="two most informative code dimensions"):
        mig(np.zeros((10, 1)), f, TYPES)


def test_disentanglement_names_match_meta() -> None:
    f = _factors(600)
    out = disentanglement(_standardised(f), f, META, seed=1)
    assert set(out) == {"betavae_score", "betavae_chance", "mig", "mig_per_factor", "skipped"}
    assert list(out["mig_per_factor"]) == [m["name"] for m in META]

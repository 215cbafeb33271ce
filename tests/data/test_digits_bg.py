"""digits-bg composites (determinism, leakage-free split, masks, background pool, generative factors) and the
prepared store."""

from __future__ import annotations

import colorsys
import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from selfsup.config.image import DigitsBgConfig
from selfsup.data.digits_bg import CLASSES, FACTORS, build_digits_bg
from selfsup.data.prepare import channel_stats, prepare_images
from selfsup.data.store import Factor, ImageSplit, load_factors, load_meta, load_split, save_dataset
from selfsup.errors import ConfigError, DataError
from selfsup.params import config_from_dict

N_SCANS = 1797  # sklearn's bundled 8x8 digit scans
SMALL = DigitsBgConfig(train_per_scan=1, test_per_scan=1)


@pytest.fixture(scope="module")
def small() -> dict[str, ImageSplit]:
    return build_digits_bg(0, SMALL)


def _assert_splits_equal(a: dict[str, ImageSplit], b: dict[str, ImageSplit]) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_array_equal(a[name].images, b[name].images)
        np.testing.assert_array_equal(a[name].labels, b[name].labels)
        np.testing.assert_array_equal(a[name].masks, b[name].masks)
        np.testing.assert_array_equal(a[name].source_ids, b[name].source_ids)


# -- build_digits_bg -------------------------------------------------------------------------------


def test_same_seed_gives_identical_arrays(small: dict[str, ImageSplit]) -> None:
    _assert_splits_equal(small, build_digits_bg(0, SMALL))


def test_other_seed_gives_other_dataset(small: dict[str, ImageSplit]) -> None:
    other = build_digits_bg(1, SMALL)
    assert not np.array_equal(small["test"].source_ids, other["test"].source_ids)
    # same shapes, different pixels
    assert other["train"].images.shape == small["train"].images.shape
    assert not np.array_equal(small["train"].images, other["train"].images)


def test_split_is_by_source_scan_with_exact_counts() -> None:
    spec = DigitsBgConfig(train_per_scan=2, test_per_scan=1, test_fraction=0.3)
    splits = build_digits_bg(3, spec)
    train_ids, test_ids = splits["train"].source_ids, splits["test"].source_ids
    n_test_scans = round(0.3 * N_SCANS)  # 539
    assert n_test_scans == 539
    assert set(train_ids.tolist()).isdisjoint(test_ids.tolist())
    assert set(train_ids.tolist()) | set(test_ids.tolist()) == set(range(N_SCANS))
    # every scan appears per_scan times in its split, and nowhere else
    np.testing.assert_array_equal(np.unique(train_ids, return_counts=True)[1], 2)
    np.testing.assert_array_equal(np.unique(test_ids, return_counts=True)[1], 1)
    assert len(splits["train"].images) == 2 * (N_SCANS - n_test_scans) == 2516
    assert len(splits["test"].images) == n_test_scans
    assert splits["train"].images.shape[1:] == (32, 32, 3)
    assert splits["train"].images.dtype == np.uint8


def test_labels_are_the_scans_digit_classes(small: dict[str, ImageSplit]) -> None:
    target = load_digits().target
    for split in small.values():
        np.testing.assert_array_equal(split.labels, target[split.source_ids])
        assert split.labels.dtype == np.int64
    assert CLASSES == [str(d) for d in range(10)]
    assert set(small["train"].labels.tolist()) == set(range(10))


def test_masks_have_image_shape_and_digit_sized_area(small: dict[str, ImageSplit]) -> None:
    spec = SMALL
    for split in small.values():
        masks = split.masks
        assert masks.dtype == bool
        assert masks.shape == split.images.shape[:3]
        area = masks.sum(axis=(1, 2))
        # a digit pasted at side >= digit_min keeps at least ~15% of its square opaque (thin "1"s)
        assert area.min() >= 0.15 * spec.digit_min**2
        assert area.max() <= spec.digit_max**2
        # the mask fits inside one pasted square of side <= digit_max
        for m in masks[:200]:
            ys, xs = np.nonzero(m)
            assert ys.max() - ys.min() < spec.digit_max
            assert xs.max() - xs.min() < spec.digit_max


def test_masked_pixels_carry_the_digit_colour() -> None:
    """With one shared background the true background is known, so the paste can be checked pixel by pixel.

    A composite pixel is ``a * colour + (1 - a) * background`` with the mask ``a > 0.5``: masked pixels
    lie closer to the digit colour than to the background, unmasked ones the other way round, and the
    opaque stroke pixels (``a == 1``) all have exactly the digit colour.
    """
    spec = DigitsBgConfig(image_size=64, digit_min=14, digit_max=20, train_per_scan=1, test_per_scan=1,
                          background_pool=1)
    split = build_digits_bg(1, spec)["test"]
    # each digit covers < 10% of the image and lands at a random place: the per-pixel median is the background
    background = np.median(split.images, axis=0)
    tol = 3.0  # uint8 rounding of the composite and of the background, in RGB distance
    opaque_fractions = []
    for image, mask in zip(split.images.astype(np.float64), split.masks, strict=True):
        values, counts = np.unique(image[mask], axis=0, return_counts=True)
        colour = values[counts.argmax()]
        opaque_fractions.append(counts.max() / mask.sum())
        to_colour = np.linalg.norm(image - colour, axis=-1)
        to_background = np.linalg.norm(image - background, axis=-1)
        assert (to_colour[mask] <= to_background[mask] + tol).all()
        assert (to_background[~mask] <= to_colour[~mask] + tol).all()
        # everything that differs from the background lies in one square of side <= digit_max
        ys, xs = np.nonzero((image != background).any(axis=-1))
        assert ys.max() - ys.min() < spec.digit_max and xs.max() - xs.min() < spec.digit_max
    # stroke_gain=3 makes strokes opaque: a large share of each mask is exactly one colour
    assert min(opaque_fractions) >= 0.2
    assert np.median(opaque_fractions) >= 0.5


def _distinct_backgrounds(images: np.ndarray, digit_area: int, limit: int) -> int:
    """Greedy count of background groups: two images share a background when they differ only
    inside their two pasted squares (at most 2 * digit_area pixels)."""
    reps: list[np.ndarray] = []
    for image in images:
        if not any((image != r).any(axis=-1).sum() <= 2 * digit_area for r in reps):
            reps.append(image)
            if len(reps) > limit:
                break
    return len(reps)


@pytest.mark.parametrize("pool", [1, 3])
def test_background_pool_bounds_distinct_backgrounds(pool: int) -> None:
    spec = DigitsBgConfig(digit_min=4, digit_max=4, train_per_scan=1, test_per_scan=1, background_pool=pool)
    splits = build_digits_bg(2, spec)
    for split in splits.values():
        assert _distinct_backgrounds(split.images, 16, limit=10) == pool
    if pool == 1:
        # every image differs from the shared background (the per-pixel median) only in its 4x4 square
        images = splits["train"].images
        background = np.median(images, axis=0)
        changed = (images != background).any(axis=-1).sum(axis=(1, 2))
        assert changed.max() <= 16


def test_background_pool_zero_draws_one_background_per_image() -> None:
    spec = DigitsBgConfig(image_size=16, digit_min=4, digit_max=4, train_per_scan=1, test_per_scan=1,
                          background_zoom=(1.0, 1.5), background_pool=0)
    images = build_digits_bg(2, spec)["test"].images[:40]
    # a few crops of the photos' flat areas (sky, wall) can look alike; nearly all are distinct
    assert _distinct_backgrounds(images, 16, limit=50) >= 36


def test_controls_switch_off_one_nuisance_and_keep_every_other_draw() -> None:
    """``background: black`` and ``digit_colour: white`` change only what they name: labels, masks
    and scans are identical; on black, pixels off the mask are at most half a colour (alpha <= 0.5);
    white digits on black are grey levels (R = G = B), bright on the mask and dark off it; where
    the plain image is black, the white-digit image keeps the photo."""
    base = DigitsBgConfig(digit_min=8, digit_max=16, train_per_scan=1, test_per_scan=1)
    default = build_digits_bg(3, base)["test"]
    black = build_digits_bg(3, dataclasses.replace(base, background="black"))["test"]
    white = build_digits_bg(3, dataclasses.replace(base, digit_colour="white"))["test"]
    plain = build_digits_bg(3, dataclasses.replace(base, background="black", digit_colour="white"))["test"]
    for variant in (black, white, plain):
        np.testing.assert_array_equal(variant.labels, default.labels)
        np.testing.assert_array_equal(variant.masks, default.masks)
        np.testing.assert_array_equal(variant.source_ids, default.source_ids)
    assert (black.images[~black.masks] <= 128).all()  # off the mask: alpha <= 0.5 of a colour <= 255, rounded
    assert (default.images[~default.masks] > 0).any(axis=-1).mean() > 0.9  # photos are almost never black
    assert (plain.images[..., 0] == plain.images[..., 1]).all() and (plain.images[..., 1] == plain.images[..., 2]).all()
    assert (plain.images[plain.masks] >= 128).all() and (plain.images[~plain.masks] <= 128).all()
    # where the plain image is black (alpha * 255 < 0.5) the white digits keep the photo, to rounding
    outside = (plain.images == 0).all(axis=-1)
    diff = np.abs(white.images[outside].astype(int) - default.images[outside].astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.999
    with pytest.raises(ConfigError, match="background"):
        config_from_dict({"data": {"digits_bg": {"background": "grey"}}})


# -- generative factors ----------------------------------------------------------------------------

TINY = DigitsBgConfig(image_size=16, digit_min=4, digit_max=10, train_per_scan=1, test_per_scan=1, background_pool=5)


def _digest(splits: dict[str, ImageSplit]) -> str:
    h = hashlib.sha256()
    for name in sorted(splits):
        for array in (splits[name].images, splits[name].labels, splits[name].masks, splits[name].source_ids):
            h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


@pytest.mark.parametrize(("seed", "spec", "expected"), [
    pytest.param(0, SMALL, "82608e8c6640ee7699ea9718430d0069981cb4582d177ef05b913447f84d6696", id="small"),
    pytest.param(7, TINY, "e2f0610cc70365f3b1d701e8709ec4e4389ec55279b16ae752828b9e039099f8", id="tiny"),
    pytest.param(7, dataclasses.replace(TINY, background="black"),
                 "80dcd10bb363922ca87050a55863bc0bf8b7450b87c1f2a580a388ce398affbe", id="black"),
    pytest.param(7, dataclasses.replace(TINY, digit_colour="white"),
                 "ff2ded909481086b323db3c742d502910677864050cf4c92f303e39ec488000a", id="white"),
    pytest.param(7, dataclasses.replace(TINY, background_pool=0),
                 "27e1cb3ca287395b82b29af306485901d615133f7b7f3a36bd15c474ee7ab3ed", id="pool-0"),
])
def test_recording_factors_changes_no_image(seed: int, spec: DigitsBgConfig, expected: str) -> None:
    """Images, labels, masks and source ids hash as they did before factors were recorded (digests
    of the builds made by the code without factors), so every random draw is unchanged."""
    assert _digest(build_digits_bg(seed, spec)) == expected


def test_factors_describe_each_composite(small: dict[str, ImageSplit]) -> None:
    spec = SMALL
    assert [(f.name, f.type) for f in FACTORS] == [
        ("digit", "categorical"), ("hue", "continuous"), ("scale", "discrete"),
        ("x", "discrete"), ("y", "discrete"), ("background", "categorical")]
    for split in small.values():
        f = split.factors
        assert f.dtype == np.float32 and f.shape == (len(split.images), len(FACTORS))
        digit, hue, scale, x, y, background = f.T
        np.testing.assert_array_equal(digit, split.labels)
        assert hue.min() >= 0.0 and hue.max() < 1.0
        for column in (scale, x, y, background):
            np.testing.assert_array_equal(column, np.round(column))
        assert scale.min() == spec.digit_min and scale.max() == spec.digit_max
        assert x.min() == 0 and y.min() == 0
        assert (x + scale <= spec.image_size).all() and (y + scale <= spec.image_size).all()
        assert background.min() == 0 and background.max() == spec.background_pool - 1
        # the mask lies inside the pasted square [y, y + scale) x [x, x + scale)
        for m, (xi, yi, si) in zip(split.masks[:300], f[:300, 2:5][:, [1, 2, 0]], strict=True):
            ys, xs = np.nonzero(m)
            assert ys.min() >= yi and ys.max() < yi + si and xs.min() >= xi and xs.max() < xi + si


def test_hue_is_the_hue_of_the_opaque_pixels(small: dict[str, ImageSplit]) -> None:
    """Opaque stroke pixels (alpha == 1) carry the rounded digit colour, the most common colour
    under the mask; its hue matches the recorded one up to the rounding. The hue is a sixth of
    (difference of two channels) / chroma; rounding moves each channel by <= 0.5, so both the
    difference and the chroma by <= 1, and the hue by <= (1/6) * 2 / chroma = 1/120 for chroma >= 40."""
    split = small["test"]
    checked = 0
    for image, mask, hue in zip(split.images[:300], split.masks[:300], split.factors[:300, 1], strict=True):
        values, counts = np.unique(image[mask], axis=0, return_counts=True)
        colour = values[counts.argmax()].astype(float)
        if colour.max() - colour.min() < 40:
            continue
        recomputed = colorsys.rgb_to_hsv(*(colour / 255.0))[0]
        assert abs((recomputed - hue + 0.5) % 1.0 - 0.5) <= 1 / 120
        checked += 1
    assert checked >= 200


def test_controls_keep_the_factors_they_do_not_switch_off() -> None:
    """The controls share every draw: digit, scale and position are the default build's; white
    digits record hue 0 (white has none) and black backgrounds record background 0 (there is one)."""
    default = build_digits_bg(3, TINY)["test"].factors
    black = build_digits_bg(3, dataclasses.replace(TINY, background="black"))["test"].factors
    white = build_digits_bg(3, dataclasses.replace(TINY, digit_colour="white"))["test"].factors
    plain = build_digits_bg(3, dataclasses.replace(TINY, background="black", digit_colour="white"))["test"].factors
    shared = [0, 2, 3, 4]  # digit, scale, x, y
    for variant in (black, white, plain):
        np.testing.assert_array_equal(variant[:, shared], default[:, shared])
    assert len(np.unique(default[:, 1])) == len(default) and len(np.unique(default[:, 5])) == TINY.background_pool
    np.testing.assert_array_equal(black[:, 1], default[:, 1])
    np.testing.assert_array_equal(white[:, 5], default[:, 5])
    assert (white[:, 1] == 0).all() and (plain[:, 1] == 0).all()
    assert (black[:, 5] == 0).all() and (plain[:, 5] == 0).all()


def test_prepare_images_writes_the_factors(tmp_path: Path) -> None:
    cfg = config_from_dict({"data": {"digits_bg": dataclasses.asdict(TINY)}})
    meta = prepare_images(cfg, tmp_path / "prepared")
    assert [f["name"] for f in meta["factors"]] == [f.name for f in FACTORS]
    built = build_digits_bg(cfg.seed, TINY)
    for name in ("train", "test"):
        factors, entries = load_factors(tmp_path / "prepared", name)
        assert entries == meta["factors"]
        np.testing.assert_array_equal(factors, built[name].factors)
    by_name = {f["name"]: f for f in meta["factors"]}
    assert by_name["digit"] == {"name": "digit", "type": "categorical", "values": 10}
    assert by_name["hue"] == {"name": "hue", "type": "continuous", "values": None}
    assert by_name["scale"]["values"] == TINY.digit_max - TINY.digit_min + 1
    assert by_name["background"]["values"] == TINY.background_pool


# -- store -----------------------------------------------------------------------------------------


def _splits(rng: np.random.Generator, n_train: int = 6, n_test: int = 4, masks: bool = True) -> dict[str, ImageSplit]:
    def one(n: int) -> ImageSplit:
        return ImageSplit(images=rng.integers(0, 256, (n, 5, 7, 3), dtype=np.uint8),
                          labels=rng.integers(0, 3, n).astype(np.int64),
                          masks=rng.random((n, 5, 7)) > 0.5 if masks else None,
                          source_ids=rng.permutation(100)[:n].astype(np.int64))

    return {"train": one(n_train), "test": one(n_test)}


def test_store_round_trip(tmp_path: Path) -> None:
    splits = _splits(np.random.default_rng(0))
    root = tmp_path / "prepared"
    save_dataset(root, "toy", ["a", "b", "c"], splits, extra={"mean": [0.1, 0.2, 0.3]})
    meta = load_meta(root)
    assert meta == {"dataset": "toy", "classes": ["a", "b", "c"], "image_size": [5, 7],
                    "splits": {"train": 6, "test": 4}, "has_masks": True, "mean": [0.1, 0.2, 0.3]}
    for mmap in (True, False):
        for name, expected in splits.items():
            got = load_split(root, name, mmap=mmap)
            np.testing.assert_array_equal(got.images, expected.images)
            np.testing.assert_array_equal(got.labels, expected.labels)
            np.testing.assert_array_equal(got.masks, expected.masks)
            np.testing.assert_array_equal(got.source_ids, expected.source_ids)
            assert got.images.dtype == np.uint8 and got.masks.dtype == bool
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared"]  # no .tmp left behind


def test_store_without_masks_and_default_source_ids(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    split = ImageSplit(images=rng.integers(0, 256, (3, 4, 4, 3), dtype=np.uint8), labels=np.array([-1, -1, -1]))
    np.testing.assert_array_equal(split.source_ids, [0, 1, 2])
    save_dataset(tmp_path / "d", "toy", [], {"unlabeled": split})
    assert load_meta(tmp_path / "d")["has_masks"] is False
    got = load_split(tmp_path / "d", "unlabeled")
    assert got.masks is None
    np.testing.assert_array_equal(got.labels, [-1, -1, -1])
    assert not (tmp_path / "d" / "unlabeled" / "masks.npy").exists()


def test_save_dataset_overwrites_existing_dataset(tmp_path: Path) -> None:
    root = tmp_path / "prepared"
    rng = np.random.default_rng(2)
    save_dataset(root, "first", ["a"], _splits(rng, 6, 4))
    (root / "stale.txt").write_text("left over")
    # a stale temp folder from an interrupted earlier write is replaced too
    (tmp_path / "prepared.tmp" / "junk").mkdir(parents=True)
    second = _splits(rng, 3, 2, masks=False)
    save_dataset(root, "second", ["a", "b"], second)
    meta = json.loads((root / "meta.json").read_text())
    assert meta["dataset"] == "second" and meta["splits"] == {"train": 3, "test": 2}
    assert meta["has_masks"] is False
    assert not (root / "stale.txt").exists()
    assert not (root / "train" / "masks.npy").exists()
    assert not (tmp_path / "prepared.tmp").exists()
    np.testing.assert_array_equal(load_split(root, "train").images, second["train"].images)


def test_save_dataset_rejects_unknown_split_names(tmp_path: Path) -> None:
    splits = _splits(np.random.default_rng(3))
    with pytest.raises(DataError, match="val"):
        save_dataset(tmp_path / "d", "toy", ["a"], {"val": splits["train"]})
    assert not (tmp_path / "d").exists()


def test_store_round_trip_of_factors(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    splits = _splits(rng)
    names = [Factor("shape", "categorical"), Factor("size", "discrete"), Factor("angle", "continuous")]
    for split in splits.values():
        n = len(split.images)
        split.factors = np.stack([rng.integers(0, 3, n), rng.integers(0, 5, n), rng.random(n)], 1)
    save_dataset(tmp_path / "d", "toy", ["a"], splits, extra={"mean": [0.5]}, factors=names)
    meta = load_meta(tmp_path / "d")
    both = np.concatenate([s.factors for s in splits.values()])
    assert meta["factors"] == [{"name": "shape", "type": "categorical", "values": len(np.unique(both[:, 0]))},
                               {"name": "size", "type": "discrete", "values": len(np.unique(both[:, 1]))},
                               {"name": "angle", "type": "continuous", "values": None}]
    assert meta["mean"] == [0.5] and meta["has_masks"] is True
    for name, split in splits.items():
        factors, entries = load_factors(tmp_path / "d", name)
        assert factors.dtype == np.float32 and entries == meta["factors"]
        np.testing.assert_array_equal(factors, split.factors.astype(np.float32))
        np.testing.assert_array_equal(load_split(tmp_path / "d", name).factors, factors)


def test_factors_are_described_only_when_every_split_has_them(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    splits = _splits(rng)
    save_dataset(tmp_path / "none", "toy", ["a"], splits)  # a real dataset: no factors anywhere
    assert "factors" not in load_meta(tmp_path / "none")
    assert load_factors(tmp_path / "none", "train") is None
    assert load_split(tmp_path / "none", "train").factors is None
    assert not (tmp_path / "none" / "train" / "factors.npy").exists()
    splits["train"].factors = rng.random((6, 2)).astype(np.float32)
    names = [Factor("u", "continuous"), Factor("v", "continuous")]
    save_dataset(tmp_path / "part", "toy", ["a"], splits, factors=names)
    assert "factors" not in load_meta(tmp_path / "part")
    assert load_factors(tmp_path / "part", "train") is None
    np.testing.assert_array_equal(load_split(tmp_path / "part", "train").factors, splits["train"].factors)


def test_wrong_factors_raise_data_error(tmp_path: Path) -> None:
    images = np.zeros((4, 5, 5, 3), dtype=np.uint8)
    labels = np.zeros(4, dtype=np.int64)
    with pytest.raises(DataError, match=r"factors must be \(N, F\) with N = 4 images, got shape \(4,\)"):
        ImageSplit(images=images, labels=labels, factors=np.zeros(4, dtype=np.float32))
    with pytest.raises(DataError, match=r"N = 4 images, got shape \(3, 2\)"):
        ImageSplit(images=images, labels=labels, factors=np.zeros((3, 2), dtype=np.float32))
    with pytest.raises(DataError, match="type 'ordinal'"):
        Factor("size", "ordinal")
    split = ImageSplit(images=images, labels=labels, factors=np.zeros((4, 2), dtype=np.float32))
    with pytest.raises(DataError, match="2 columns for 1 named factors"):
        save_dataset(tmp_path / "d", "toy", ["a"], {"train": split}, factors=[Factor("u", "continuous")])
    with pytest.raises(DataError, match="no factor names"):
        save_dataset(tmp_path / "d", "toy", ["a"], {"train": split})
    assert not (tmp_path / "d").exists()
    names = [Factor("u", "continuous"), Factor("v", "discrete")]
    save_dataset(tmp_path / "d", "toy", ["a"], {"train": split}, factors=names)
    (tmp_path / "d" / "train" / "factors.npy").unlink()
    with pytest.raises(DataError, match="factors.npy is missing.*dvc repro"):
        load_factors(tmp_path / "d", "train")
    np.save(tmp_path / "d" / "train" / "factors.npy", np.zeros((4, 3), dtype=np.float32))
    with pytest.raises(DataError, match="3 columns but meta.json.*names 2"):
        load_factors(tmp_path / "d", "train")


def test_load_split_of_missing_split_names_available_splits(tmp_path: Path) -> None:
    save_dataset(tmp_path / "d", "toy", ["a"], _splits(np.random.default_rng(4)))
    with pytest.raises(DataError, match=r"no split 'unlabeled'.*\['test', 'train'\]"):
        load_split(tmp_path / "d", "unlabeled")


def test_load_meta_on_empty_folder_points_to_dvc_repro(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="dvc repro"):
        load_meta(tmp_path)
    with pytest.raises(DataError, match="dvc repro"):
        load_split(tmp_path, "train")


@pytest.mark.parametrize("mmap", [True, False])
@pytest.mark.parametrize("keep", [
    pytest.param(-50, id="data-cut"),
    pytest.param(60, id="header-cut"),
    pytest.param(0, id="empty-file"),
])
def test_truncated_images_raise_data_error(tmp_path: Path, keep: int, mmap: bool) -> None:
    root = tmp_path / "d"
    save_dataset(root, "toy", ["a"], _splits(np.random.default_rng(5)))
    path = root / "train" / "images.npy"
    data = path.read_bytes()
    path.write_bytes(data[:keep] if keep >= 0 else data[:len(data) + keep])
    with pytest.raises(DataError, match="unreadable.*dvc repro"):
        load_split(root, "train", mmap=mmap)


def test_image_split_validates_arrays() -> None:
    images = np.zeros((4, 5, 5, 3), dtype=np.uint8)
    with pytest.raises(DataError, match="uint8"):
        ImageSplit(images=images.astype(np.float32), labels=np.zeros(4, dtype=np.int64))
    with pytest.raises(DataError, match="uint8"):
        ImageSplit(images=np.zeros((4, 5, 5, 1), dtype=np.uint8), labels=np.zeros(4, dtype=np.int64))
    with pytest.raises(DataError, match="3 labels for 4 images"):
        ImageSplit(images=images, labels=np.zeros(3, dtype=np.int64))
    with pytest.raises(DataError, match="masks of shape"):
        ImageSplit(images=images, labels=np.zeros(4, dtype=np.int64), masks=np.zeros((4, 5, 4), dtype=bool))


def test_channel_stats_exact_values() -> None:
    # two 1x2 images; channel R holds 0, 255, 255, 255; G holds 51 everywhere; B holds 0, 0, 255, 255
    images = np.array([[[[0, 51, 0], [255, 51, 0]]],
                       [[[255, 51, 255], [255, 51, 255]]]], dtype=np.uint8)
    assert images.shape == (2, 1, 2, 3)
    mean, std = channel_stats(images)
    # R: values 0,1,1,1 -> mean 0.75, var 0.75 - 0.5625 = 0.1875, std sqrt(0.1875) = 0.433013
    # G: 0.2 everywhere -> std 0, floored at sqrt(1e-12) = 1e-6
    # B: values 0,0,1,1 -> mean 0.5, std 0.5
    assert mean == [0.75, 0.2, 0.5]
    assert std == [0.433013, 0.000001, 0.5]
    # chunking does not change the result
    assert channel_stats(images, chunk=1) == (mean, std)

"""Mask sources of the segment stage, mask IoU, in-painted backgrounds and the stages' outputs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import write_params
from selfsup.config.image import SegmentConfig
from selfsup.data.store import ImageSplit, save_dataset
from selfsup.errors import ConfigError, DataError
from selfsup.params import load_config
from selfsup.prep.backgrounds import inpaint_backgrounds
from selfsup.prep.masks import build_backgrounds, segment
from selfsup.prep.segment import (
    boundary_saliency,
    deeplab_masks,
    estimate_masks,
    grabcut_refine,
    mask_iou,
    otsu_mask,
    spectral_residual_saliency,
)


def square_images(n: int, size: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Solid squares of a random saturated colour on a smooth, noisy greenish background."""
    rng = np.random.default_rng(seed)
    images = np.empty((n, size, size, 3), np.uint8)
    masks = np.zeros((n, size, size), bool)
    for i in range(n):
        ramp = np.linspace(0, 40, size)[None, :, None]
        bg = np.array([40, 140, 60])[None, None] + ramp + rng.normal(0, 6, (size, size, 3))
        side = int(rng.integers(6, 12))
        y, x = rng.integers(2, size - side - 2, 2)
        masks[i, y:y + side, x:x + side] = True
        bg[masks[i]] = rng.choice([[230, 30, 30], [30, 30, 230], [240, 240, 40]])
        images[i] = np.clip(bg, 0, 255).astype(np.uint8)
    return images, masks


def test_mask_iou_by_hand() -> None:
    pred = np.array([[[1, 1], [0, 0]], [[0, 0], [0, 0]], [[1, 0], [0, 0]]], bool)
    truth = np.array([[[1, 0], [0, 0]], [[0, 0], [0, 0]], [[0, 1], [0, 0]]], bool)
    np.testing.assert_allclose(mask_iou(pred, truth), [0.5, 1.0, 0.0])


def test_boundary_saliency_by_hand() -> None:
    """A white centre on black: Lab distance 100 (L 100 vs 0, a = b = 0) at the centre, 0 on the border."""
    image = np.zeros((1, 3, 3, 3), np.uint8)
    image[0, 1, 1] = 255
    sal = boundary_saliency(torch.from_numpy(image), border=1, k=3)[0].numpy()
    assert sal[1, 1] == pytest.approx(100.0, abs=0.05)
    assert np.abs(np.delete(sal.ravel(), 4)).max() < 1e-3


def test_otsu_mask_splits_two_levels() -> None:
    sal = np.array([[0.1, 0.1, 0.9], [0.1, 0.8, 0.9]])
    assert otsu_mask(sal).tolist() == [[False, False, True], [False, True, True]]
    assert not otsu_mask(np.zeros((3, 3))).any()


def test_boundary_source_finds_squares() -> None:
    images, truth = square_images(24)
    masks = estimate_masks(images, SegmentConfig(), progress=False)
    assert masks.dtype == bool and masks.shape == truth.shape
    assert mask_iou(masks, truth).mean() > 0.9


def test_grabcut_refines_a_rough_seed() -> None:
    images, truth = square_images(8, seed=1)
    ious = []
    for image, mask in zip(images, truth, strict=True):
        seed = np.zeros_like(mask)
        ys, xs = np.nonzero(mask)
        seed[ys.min() - 2:ys.max() + 3, xs.min() - 2:xs.max() + 3] = True  # a box 2 px too large
        ious.append(mask_iou(grabcut_refine(image, seed)[None], mask[None])[0])
    assert np.mean(ious) > 0.85


def test_spectral_residual_is_a_saliency_map() -> None:
    images, _ = square_images(2)
    sal = spectral_residual_saliency(images[0])
    assert sal.shape == images.shape[1:3] and np.isfinite(sal).all() and sal.min() >= 0
    masks = estimate_masks(images, dataclasses.replace(SegmentConfig(), source="spectral_residual"), progress=False)
    assert masks.shape == (2, 24, 24)


def test_ground_truth_source_needs_ground_truth() -> None:
    images, truth = square_images(3)
    cfg = dataclasses.replace(SegmentConfig(), source="ground_truth")
    np.testing.assert_array_equal(estimate_masks(images, cfg, truth), truth)
    with pytest.raises(ConfigError, match="segment.source=boundary"):
        estimate_masks(images, cfg, None)


def test_deeplab_without_weights_says_where_to_put_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    images, _ = square_images(2)
    cfg = dataclasses.replace(SegmentConfig(), source="deeplabv3")
    with pytest.raises(DataError) as info:
        estimate_masks(images, cfg)
    msg = str(info.value)
    assert str(tmp_path / "hub" / "checkpoints") in msg and "download.pytorch.org" in msg and "segment.weights" in msg
    with pytest.raises(DataError, match="does not exist"):
        estimate_masks(images, dataclasses.replace(cfg, weights=str(tmp_path / "nope.pth")))
    bad = tmp_path / "bad.pth"
    torch.save({"not": torch.zeros(1)}, bad)
    with pytest.raises(DataError, match="not a DeepLabV3"):
        estimate_masks(images, dataclasses.replace(cfg, weights=str(bad)))


def test_deeplab_runs_from_a_weights_file(tmp_path: Path) -> None:
    """The real network from a state dict on disk (random weights: only shapes and determinism)."""
    from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large

    torch.manual_seed(0)
    net = deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21, aux_loss=True)
    torch.save(net.state_dict(), tmp_path / "w.pth")
    images, _ = square_images(3)
    cfg = dataclasses.replace(SegmentConfig(), source="deeplabv3", weights=str(tmp_path / "w.pth"), network_size=64)
    masks = deeplab_masks(images, cfg, progress=False)
    assert masks.dtype == bool and masks.shape == (3, 24, 24)
    np.testing.assert_array_equal(masks, deeplab_masks(images, cfg, progress=False))


def test_inpainting_removes_the_foreground() -> None:
    image = np.full((1, 20, 20, 3), (30, 160, 90), np.uint8)
    mask = np.zeros((1, 20, 20), bool)
    image[0, 6:12, 7:13] = (250, 10, 10)
    mask[0, 6:12, 7:13] = True
    out = inpaint_backgrounds(image, mask, radius=3, dilate=1, progress=False)
    assert np.abs(out[0].astype(int) - (30, 160, 90)).max() <= 2
    np.testing.assert_array_equal(inpaint_backgrounds(image, np.zeros_like(mask), progress=False), image)


def square_dataset(root: Path, n: int = 32) -> Path:
    images, masks = square_images(n)
    split = ImageSplit(images=images, labels=np.zeros(n, np.int64), masks=masks)
    save_dataset(root, "squares", ["a"], {"train": split, "test": split},
                 extra={"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]})
    return root


def test_segment_and_backgrounds_write_their_folders(project: Path, tmp_path: Path) -> None:
    data = square_dataset(tmp_path / "data")
    cfg = load_config(write_params(project, segment={"source": "boundary"}))
    metrics = segment(cfg, data, tmp_path / "masks", progress=False)
    assert metrics["mean_iou"] > 0.9 and metrics["n_images"] == 32
    assert 0.05 < metrics["foreground_fraction"] < 0.3
    assert np.load(tmp_path / "masks" / "masks.npy").shape == (32, 24, 24)
    assert not (tmp_path / "masks.tmp").exists()

    off = build_backgrounds(cfg, data, tmp_path / "masks", tmp_path / "bg", progress=False)
    assert off == {"enabled": False}
    assert sorted(p.name for p in (tmp_path / "bg").iterdir()) == ["meta.json"]
    marker = (tmp_path / "bg" / "meta.json").read_bytes()
    cfg2 = load_config(write_params(project, segment={"source": "boundary", "nearest": 4}))
    segment(cfg2, data, tmp_path / "masks", progress=False)
    build_backgrounds(cfg2, data, tmp_path / "masks", tmp_path / "bg", progress=False)
    assert (tmp_path / "bg" / "meta.json").read_bytes() == marker  # pretrain's input does not change

    cfg_on = load_config(write_params(project, views={"background": {"random": 0.5}}))
    meta = build_backgrounds(cfg_on, data, tmp_path / "masks", tmp_path / "bg", progress=False)
    assert meta["enabled"] and meta["source"] == "boundary"
    bank = np.load(tmp_path / "bg" / "backgrounds.npy")
    assert bank.shape == (32, 24, 24, 3) and bank.dtype == np.uint8
    assert json.loads((tmp_path / "bg" / "meta.json").read_text())["n_images"] == 32


def test_backgrounds_refuse_masks_of_other_images(project: Path, tmp_path: Path) -> None:
    data = square_dataset(tmp_path / "data")
    (tmp_path / "masks").mkdir()
    np.save(tmp_path / "masks" / "masks.npy", np.zeros((5, 24, 24), bool))
    cfg = load_config(write_params(project, views={"background": {"rm": 0.5}}))
    with pytest.raises(DataError, match="dvc repro segment"):
        build_backgrounds(cfg, data, tmp_path / "masks", tmp_path / "bg", progress=False)

"""Background augmentations (Ryali et al. 2021): masks follow the geometry, BG_RM / BG_Random /
BG_Swaps build the images the paper describes, and their probabilities are honoured."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY_RUN, write_params
from selfsup.augment.background import BackgroundAugment, BackgroundBank, paste
from selfsup.augment.views import ViewGenerator
from selfsup.config.image import BackgroundConfig, BlurConfig, ColorJitterConfig, ViewsConfig
from selfsup.data.store import ImageSplit, save_dataset
from selfsup.errors import ConfigError, DataError
from selfsup.params import load_config
from selfsup.prep.masks import build_backgrounds, segment
from selfsup.train import image_loop

MEAN = [0.5, 0.5, 0.5]
STD = [0.25, 0.25, 0.25]
CPU = torch.device("cpu")
NO_COLOUR = dict(color_jitter=ColorJitterConfig(p=0.0), grayscale=0.0, blur=BlurConfig(p=0.0), solarize=0.0)


def square_batch(n: int, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """White squares at different off-centre places on black, and their masks."""
    images = torch.zeros(n, 3, size, size, dtype=torch.uint8)
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    for i in range(n):
        y, x = 1 + i % 5, 1 + (2 * i) % 6
        masks[i, y:y + 6, x:x + 5] = True
    images[:, :, :, :] = masks[:, None].to(torch.uint8) * 255
    return images, masks


def bank_of(masks: torch.Tensor, backgrounds: torch.Tensor | None = None) -> BackgroundBank:
    n, h, w = masks.shape
    if backgrounds is None:
        backgrounds = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, h, w).clone() * 10
    return BackgroundBank(masks, backgrounds)


@pytest.mark.parametrize("backend", ["batched", "per_sample"])
def test_masks_follow_crops_and_flips_exactly(backend: str) -> None:
    torch.manual_seed(0)
    images, masks = square_batch(32)
    cfg = ViewsConfig(backend=backend, size=12, crop_scale=(0.3, 1.0), hflip=0.5, **NO_COLOUR)
    gen = ViewGenerator(cfg, MEAN, STD, n_views=2, background=BackgroundAugment(BackgroundConfig(), bank_of(masks)))
    views = gen(images, CPU, torch.arange(32), with_masks=True)
    assert len(views.masks.large) == 2 and views.masks.small == [] and views.masks.hard_negative is None
    flipped = 0
    for view, mask in zip(views.large, views.masks.large, strict=True):
        assert mask.shape == (32, 1, 12, 12)
        grey = view * STD[0] + MEAN[0]  # every channel is the image of the square
        torch.testing.assert_close(grey, mask.expand_as(grey), atol=1e-5, rtol=0)
        # a flip moves the square's centre of mass to the other side of the crop's centre
        cols = torch.arange(12.0)
        centre = (mask[:, 0].sum(1) * cols).sum(1) / mask[:, 0].sum((1, 2)).clamp_min(1e-6)
        flipped += int((centre > 6).sum())
    assert flipped > 0


def test_bg_rm_fills_the_background_and_keeps_the_foreground() -> None:
    images, masks = square_batch(4)
    x = torch.rand(4, 3, 16, 16)
    aug = BackgroundAugment(BackgroundConfig(rm=1.0, fill=0.3), bank_of(masks))
    alpha = aug.alpha(torch.arange(4), CPU)
    out = aug.apply(x, alpha, torch.arange(4))
    m = masks[:, None].expand_as(x)
    torch.testing.assert_close(out[m], x[m])
    assert torch.all(out[~m] == 0.3)


def test_bg_random_pastes_on_another_images_background() -> None:
    torch.manual_seed(1)
    images, masks = square_batch(6)
    x = torch.rand(6, 3, 16, 16)
    bank = bank_of(masks)  # background of image j is the constant 10 j / 255
    aug = BackgroundAugment(BackgroundConfig(random=1.0), bank)
    index = torch.arange(6)
    out = aug.apply(x, aug.alpha(index, CPU), index)
    for i in range(6):
        bg_values = (out[i][~masks[i].expand(3, -1, -1)] * 255).round().unique()
        assert len(bg_values) == 1
        j = int(bg_values.item()) // 10
        assert j != i and 0 <= j < 6
        torch.testing.assert_close(out[i][masks[i].expand(3, -1, -1)], x[i][masks[i].expand(3, -1, -1)])


def test_bg_swaps_builds_the_positive_and_the_hard_negative() -> None:
    torch.manual_seed(2)
    _, masks = square_batch(5)
    x = torch.rand(5, 3, 16, 16)
    bank = bank_of(masks)
    aug = BackgroundAugment(BackgroundConfig(swaps=1.0), bank)
    index = torch.tensor([4, 0, 3, 1, 2])
    alpha = aug.alpha(index, CPU)
    positive, hard, hard_alpha, swapped = aug.swap(x, alpha, index)
    assert swapped.all()
    own_bg = bank.backgrounds[index].float() / 255
    for b in range(5):
        fg = masks[index[b]].expand(3, -1, -1)
        # the positive: image b's own subject on a background that is not its own
        torch.testing.assert_close(positive[b][fg], x[b][fg])
        other = (positive[b][~fg] * 255).round().unique()
        assert len(other) == 1 and int(other.item()) // 10 != int(index[b])
        # the hard negative: the next image's subject on image b's own background
        nxt = (b + 1) % 5
        fg_next = masks[index[nxt]].expand(3, -1, -1)
        torch.testing.assert_close(hard[b][fg_next], x[nxt][fg_next])
        torch.testing.assert_close(hard[b][~fg_next], own_bg[b][~fg_next])
        torch.testing.assert_close(hard_alpha[b, 0], masks[index[nxt]].float())


def test_probabilities_are_honoured() -> None:
    torch.manual_seed(3)
    n = 20000
    masks = torch.zeros(n, 2, 2, dtype=torch.bool)
    masks[:, 0, 0] = True
    bank = BackgroundBank(masks, torch.zeros(n, 3, 2, 2, dtype=torch.uint8))
    aug = BackgroundAugment(BackgroundConfig(rm=0.3, random=0.5, swaps=0.4, fill=0.5), bank)
    x = torch.ones(n, 3, 2, 2)
    index = torch.arange(n)
    alpha = aug.alpha(index, CPU)
    corner = aug.apply(x, alpha, index)[:, 0, 1, 1]  # a background pixel: 0.5 removed, 0 random, 1 kept
    for value, p in ((0.5, 0.3), (0.0, 0.5), (1.0, 0.2)):
        freq = float((corner == value).float().mean())
        assert abs(freq - p) < 4 * math.sqrt(p * (1 - p) / n), (value, freq)
    swapped = aug.swap(x, alpha, index)[3]
    assert abs(float(swapped.float().mean()) - 0.4) < 4 * math.sqrt(0.24 / n)


def test_rm_and_random_together_may_not_exceed_one(project: Path) -> None:
    with pytest.raises(ConfigError, match="views.background.rm=0.6"):
        load_config(write_params(project, views={"background": {"rm": 0.6, "random": 0.6}}))


def test_paste_by_hand() -> None:
    fg, bg = torch.full((1, 3, 1, 2), 1.0), torch.full((1, 3, 1, 2), 0.2)
    alpha = torch.tensor([[[[1.0, 0.25]]]])
    torch.testing.assert_close(paste(fg, alpha, bg)[0, 0, 0], torch.tensor([1.0, 0.4]))


def square_data(root: Path, n: int = 32) -> Path:
    images, masks = square_batch(n)
    rgb = images.permute(0, 2, 3, 1).numpy().copy()
    rgb[~masks.numpy()] = (40, 120, 60)
    split = ImageSplit(images=rgb, labels=np.arange(n) % 4, masks=masks.numpy())
    save_dataset(root, "squares", list("abcd"), {"train": split, "test": split},
                 extra={"mean": MEAN, "std": STD})
    return root


@pytest.mark.parametrize("method", ["simclr", "moco"])
def test_training_with_every_background_augmentation(project: Path, tmp_path: Path, method: str) -> None:
    data = square_data(tmp_path / "data")
    extra = {"queue_size": 32, "shuffle_bn_splits": 2} if method == "moco" else {}
    views = {**TINY_RUN["views"], "background": {"rm": 0.2, "random": 0.3, "swaps": 0.5}}
    cfg = load_config(write_params(project, method=method, **{**TINY_RUN, **extra, "views": views}))
    segment(cfg, data, tmp_path / "masks", progress=False)
    build_backgrounds(cfg, data, tmp_path / "masks", tmp_path / "bg", progress=False)
    trainer = image_loop(cfg, data, tmp_path / "ck", backgrounds_dir=tmp_path / "bg")
    views = trainer.task.views(trainer.task.images[:16], CPU, torch.arange(16))
    assert len(views.large) == 2 and views.small == [] and views.masks is None
    assert views.hard_negative.shape == views.large[0].shape  # BG_Swaps' hard negative
    history = trainer.fit()
    assert all(math.isfinite(r["loss"]) for r in history.rows)


def test_trainer_refuses_what_cannot_work(project: Path, tmp_path: Path) -> None:
    data = square_data(tmp_path / "data")
    bg = {**TINY_RUN["views"], "background": {"swaps": 0.5}}
    run = {**TINY_RUN, "views": bg}
    cfg = load_config(write_params(project, method="byol", **run))
    with pytest.raises(ConfigError, match="BG_Swaps works with moco, mocov1, simclr"):
        image_loop(cfg, data, tmp_path / "ck", backgrounds_dir=tmp_path / "bg")
    cfg = load_config(write_params(project, method="simclr", **run))
    with pytest.raises(ConfigError, match="backgrounds"):
        image_loop(cfg, data, tmp_path / "ck")
    (tmp_path / "off").mkdir()
    (tmp_path / "off" / "meta.json").write_text('{"enabled": false}')
    with pytest.raises(DataError, match="dvc repro backgrounds"):
        image_loop(cfg, data, tmp_path / "ck", backgrounds_dir=tmp_path / "off")
    with pytest.raises(ConfigError, match="objective=nt_xent"):
        image_loop(load_config(write_params(project, method="simclr", objective="margin_triplet", **run)),
                data, tmp_path / "ck", backgrounds_dir=tmp_path / "off")

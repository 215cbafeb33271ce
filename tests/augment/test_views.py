"""View generators: shapes, per-sample randomness, the deterministic limit, and the probabilities."""

from __future__ import annotations

import pytest
import torch

from selfsup.augment.views import EvalTransform, ViewGenerator
from selfsup.config.image import BlurConfig, ColorJitterConfig, MultiCropConfig, ViewsConfig
from selfsup.methods import Views

BACKENDS = ["batched", "per_sample"]
MEAN = [0.4, 0.5, 0.6]
STD = [0.2, 0.25, 0.3]
CPU = torch.device("cpu")
# every random op switched off: the view is the whole image, resized and normalised
OFF = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip=0.0, color_jitter=ColorJitterConfig(p=0.0),
           grayscale=0.0, blur=BlurConfig(p=0.0), solarize=0.0)


def _images(b: int = 4, size: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, size, size), dtype=torch.uint8, generator=g)


def _unnormalise(x: torch.Tensor) -> torch.Tensor:
    return x * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_views_shape_dtype_and_randomness(backend: str) -> None:
    torch.manual_seed(0)
    gen = ViewGenerator(ViewsConfig(backend=backend, size=12, blur=BlurConfig(p=0.5), solarize=0.2), MEAN, STD,
                        n_views=3)
    images = _images(b=6, size=20)
    views = gen(images, CPU).large
    assert len(views) == 3
    for v in views:
        assert v.shape == (6, 3, 12, 12)
        assert v.dtype == torch.float32
        assert torch.isfinite(v).all()
    assert not torch.equal(views[0], views[1])
    assert not torch.equal(views[1], views[2])
    assert images.dtype == torch.uint8  # the input batch is left alone


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_sample_draws_its_own_parameters(backend: str) -> None:
    torch.manual_seed(1)
    gen = ViewGenerator(ViewsConfig(backend=backend, size=16), MEAN, STD)
    same = _images(b=1).repeat(8, 1, 1, 1)
    view = gen(same, CPU).large[0]
    distinct = {tuple(view[i].flatten().tolist()) for i in range(8)}
    # with shared parameters all 8 outputs would be equal; crops and jitter are drawn per sample
    assert len(distinct) == 8


def test_crop_alone_is_random_per_sample() -> None:
    torch.manual_seed(2)
    cfg = ViewsConfig(backend="batched", size=16, **{**OFF, "crop_scale": (0.2, 0.5)})
    view = ViewGenerator(cfg, MEAN, STD)(_images(b=1).repeat(6, 1, 1, 1), CPU).large[0]
    assert len({tuple(view[i].flatten().tolist()) for i in range(6)}) == 6


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_randomness_gives_the_normalised_image(backend: str) -> None:
    """View size == image size, so neither backend resizes: the view equals EvalTransform exactly.

    The per-sample backend normalises in float32 with a different operation order, hence 1e-5.
    """
    images = _images(size=16)
    views = ViewGenerator(ViewsConfig(backend=backend, size=16, **OFF), MEAN, STD)(images, CPU).large
    expected = EvalTransform(16, MEAN, STD)(images)
    for v in views:
        torch.testing.assert_close(v, expected, rtol=0, atol=1e-5)
    # hand check of one value: (pixel / 255 - mean) / std
    assert views[0][0, 1, 3, 5].item() == pytest.approx((images[0, 1, 3, 5].item() / 255 - 0.5) / 0.25, abs=1e-5)


def test_no_randomness_with_resize_per_sample_matches_eval_transform() -> None:
    """Both resize with antialiased bilinear (align_corners=False); the per-sample pipeline resizes the uint8
    image, so the only difference is rounding to whole grey levels: at most 1/255 before normalisation."""
    images = _images(size=20)
    for size in (12, 24):
        view = ViewGenerator(ViewsConfig(backend="per_sample", size=size, **OFF), MEAN, STD)(images, CPU).large[0]
        expected = EvalTransform(size, MEAN, STD)(images)
        diff = (_unnormalise(view) - _unnormalise(expected)).abs().max().item()
        assert diff <= 1 / 255 + 1e-5


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_randomness_with_resize_keeps_a_flat_colour(backend: str) -> None:
    # any interpolation of a constant image is that constant, whatever the backend's resize convention
    images = torch.tensor([10, 128, 250], dtype=torch.uint8).view(1, 3, 1, 1).expand(2, 3, 20, 20).contiguous()
    view = ViewGenerator(ViewsConfig(backend=backend, size=12, **OFF), MEAN, STD)(images, CPU).large[0]
    torch.testing.assert_close(view, EvalTransform(12, MEAN, STD)(images), rtol=0, atol=1e-5)
    assert view[0, 0, 0, 0].item() == pytest.approx((10 / 255 - 0.4) / 0.2, abs=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_grayscale_always_gives_equal_channels(backend: str) -> None:
    torch.manual_seed(3)
    cfg = ViewsConfig(backend=backend, size=16, **{**OFF, "grayscale": 1.0})
    x = _unnormalise(ViewGenerator(cfg, MEAN, STD)(_images(), CPU).large[0])
    torch.testing.assert_close(x[:, 0], x[:, 1], rtol=0, atol=1e-5)
    torch.testing.assert_close(x[:, 1], x[:, 2], rtol=0, atol=1e-5)
    # and it is a real grey image, not a constant
    assert x.std().item() > 0.1


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_grayscale_keeps_colour(backend: str) -> None:
    torch.manual_seed(4)
    x = _unnormalise(ViewGenerator(ViewsConfig(backend=backend, size=16, **OFF), MEAN, STD)(_images(), CPU).large[0])
    # random RGB input: the channels differ by ~0.33 on average
    assert (x[:, 0] - x[:, 1]).abs().mean().item() > 0.2
    assert (x[:, 1] - x[:, 2]).abs().mean().item() > 0.2


@pytest.mark.parametrize("backend", BACKENDS)
def test_hflip_always_gives_the_exact_mirror(backend: str) -> None:
    torch.manual_seed(5)
    cfg = ViewsConfig(backend=backend, size=16, **{**OFF, "hflip": 1.0})
    images = _images()
    views = ViewGenerator(cfg, MEAN, STD)(images, CPU).large
    expected = EvalTransform(16, MEAN, STD)(images).flip(-1)
    for v in views:
        torch.testing.assert_close(v, expected, rtol=0, atol=1e-5)


def test_batched_backend_is_deterministic_under_torch_seed() -> None:
    cfg = ViewsConfig(backend="batched", size=12, blur=BlurConfig(p=0.5), solarize=0.3)
    images = _images(size=20)

    def draw(seed: int) -> list[torch.Tensor]:
        torch.manual_seed(seed)
        return ViewGenerator(cfg, MEAN, STD)(images, CPU).large

    first, again, other = draw(7), draw(7), draw(8)
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(first[0], other[0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_multi_crop_gives_small_views_besides_the_large_ones(backend: str) -> None:
    torch.manual_seed(3)
    cfg = ViewsConfig(backend=backend, size=16, multi_crop=MultiCropConfig(n_small=3, size=8, crop_scale=(0.05, 0.3)))
    views = ViewGenerator(cfg, MEAN, STD, n_views=2, n_small=3)(_images(b=5, size=20), CPU)
    assert [tuple(v.shape) for v in views.large] == [(5, 3, 16, 16)] * 2
    assert [tuple(v.shape) for v in views.small] == [(5, 3, 8, 8)] * 3
    assert views.hard_negative is None and views.masks is None
    assert not torch.equal(views.small[0], views.small[1])


def test_views_map_reaches_every_tensor() -> None:
    t = [torch.full((1,), float(i)) for i in range(6)]
    views = Views(t[:2], t[2:3], t[3], masks=Views(t[4:5], [], t[5]))
    doubled = views.map(lambda x: 2 * x)
    assert [v.item() for v in doubled.large + doubled.small] == [0.0, 2.0, 4.0] and doubled.hard_negative.item() == 6.0
    assert [v.item() for v in doubled.masks.large] == [8.0] and doubled.masks.hard_negative.item() == 10.0
    assert doubled.masks.small == [] and doubled.masks.masks is None and views.large[1].item() == 1.0

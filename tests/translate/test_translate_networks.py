"""Translation networks: the CUT/CycleGAN generator and its taps, the PatchGAN, CUT's patch head and init."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from selfsup.errors import ConfigError
from selfsup.translate.networks import (
    PatchGANDiscriminator,
    PatchHead,
    ResnetBlock,
    ResnetGenerator,
    init_weights,
)


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_generator_maps_images_in_0_1_to_images_in_0_1(images: torch.Tensor) -> None:
    torch.manual_seed(0)
    g = ResnetGenerator()
    out = g(images)
    assert out.shape == (2, 3, 32, 32)
    assert out.min() >= 0 and out.max() <= 1
    # the last tap is the tanh output in [-1, 1]; forward maps it by (t + 1) / 2
    (last,) = g.encode(images, [len(g.layers)])
    assert torch.allclose(out, (last + 1) / 2)
    # stem, 2 down, 4 residual, 2 up, head
    assert len(g.layers) == 10
    assert [type(s) for s in g.layers[3:7]] == [ResnetBlock] * 4


def test_generator_taps_and_nce_layers(images: torch.Tensor) -> None:
    torch.manual_seed(0)
    g = ResnetGenerator()
    # input, stem, down 1, down 2, 3rd residual block (tap i is the output of layers[i - 1])
    assert g.nce_layers == (0, 1, 2, 3, 6)
    assert isinstance(g.layers[6 - 1], ResnetBlock) and g.layers[5] is g.layers[3 + 4 // 2]
    assert g.channels(g.nce_layers) == [3, 32, 64, 128, 128]
    feats = g.encode(images, g.nce_layers)
    assert [tuple(f.shape) for f in feats] == [(2, 3, 32, 32), (2, 32, 32, 32), (2, 64, 16, 16), (2, 128, 8, 8),
                                               (2, 128, 8, 8)]
    assert torch.equal(feats[0], 2 * images - 1)
    assert torch.allclose(feats[4], g.layers[:6](2 * images - 1))
    # every tap: as many tensors as ids, in the order asked, channels matching channels()
    ids = list(range(len(g.layers) + 1))[::-1]
    for f, c in zip(g.encode(images, ids), g.channels(ids), strict=True):
        assert f.shape[1] == c
    assert g.encode(images, []) == []
    with pytest.raises(ConfigError, match="taps"):
        g.encode(images, [len(g.layers) + 1])
    with pytest.raises(ConfigError, match="taps"):
        g.channels([-1])


def test_encode_runs_only_the_stages_it_needs(images: torch.Tensor) -> None:
    g = ResnetGenerator(width=8)
    ran = []
    for i, stage in enumerate(g.layers):
        stage.register_forward_hook(lambda *_, i=i: ran.append(i))
    g.encode(images, [3, 1])
    assert ran == [0, 1, 2]


def test_deeper_generator_keeps_the_size_and_scales_nce_layers(images: torch.Tensor) -> None:
    g = ResnetGenerator(width=8, n_blocks=6, n_down=3)
    assert g(images).shape == (2, 3, 32, 32)
    assert g.nce_layers == (0, 1, 2, 3, 4, 3 + 2 + 3)
    assert all(0 <= i <= len(g.layers) for i in g.nce_layers)
    assert isinstance(g.layers[g.nce_layers[-1] - 1], ResnetBlock)
    assert g.channels(g.nce_layers) == [3, 8, 16, 32, 64, 64]
    with pytest.raises(ConfigError):
        ResnetGenerator(n_blocks=0)


@pytest.mark.parametrize(("n_layers", "side"), [(1, 14), (2, 6), (3, 2)])
def test_discriminator_patch_map_size(images: torch.Tensor, n_layers: int, side: int) -> None:
    # n stride-2 4x4 convs halve 32 n times, then two stride-1 4x4 convs (pad 1) remove one pixel each
    d = PatchGANDiscriminator(n_layers=n_layers)
    assert d(images).shape == (2, 1, side, side)


def _without_norms(d: PatchGANDiscriminator) -> PatchGANDiscriminator:
    # instance norm mixes all locations; take it out to see which pixels the convolutions reach
    for i, layer in enumerate(d.layers):
        if isinstance(layer, nn.InstanceNorm2d):
            d.layers[i] = nn.Identity()
    return d.double()


def _support(d: PatchGANDiscriminator, size: int, row: int, col: int) -> tuple[list[int], list[int]]:
    x = torch.rand(1, 3, size, size, dtype=torch.float64, requires_grad=True)
    d(x)[0, 0, row, col].backward()
    hit = x.grad.abs().sum(dim=(0, 1)) > 0
    rows = hit.any(dim=1).nonzero().flatten().tolist()
    cols = hit.any(dim=0).nonzero().flatten().tolist()
    return [rows[0], rows[-1]], [cols[0], cols[-1]]


def test_discriminator_receptive_field_is_34_pixels() -> None:
    torch.manual_seed(0)
    d = _without_norms(PatchGANDiscriminator())
    # score p covers input pixels 4p - 11 .. 4p + 22: a 34-pixel window (9 * 2^2 - 2)
    assert _support(d, 96, 10, 10) == ([29, 62], [29, 62])
    # at 32x32 the corner scores see 0..22 and 9..31 of the image
    assert _support(d, 32, 0, 5) == ([0, 22], [9, 31])


def test_patch_head_samples_shared_locations_and_normalises(images: torch.Tensor) -> None:
    torch.manual_seed(0)
    g = ResnetGenerator()
    head = PatchHead(g.channels(g.nce_layers))
    feats = g.encode(images, g.nce_layers)
    emb, ids = head(feats, 100, generator=torch.Generator().manual_seed(1))
    # N = min(n_patches, H*W): 32x32, 32x32, 16x16, 8x8 and 8x8 (64 locations) maps
    assert [tuple(e.shape) for e in emb] == [(2, 100, 256)] * 3 + [(2, 64, 256)] * 2
    for e, i, f in zip(emb, ids, feats, strict=True):
        assert torch.allclose(e.norm(dim=-1), torch.ones(e.shape[:2]), atol=1e-5)
        assert i.dtype == torch.long and i.unique().numel() == len(i) and 0 <= i.min() and i.max() < f[0, 0].numel()
    # location n of every image is the feature vector at (ids[n] // W, ids[n] % W) through that layer's MLP
    f, i, mlp = feats[2], ids[2], head.mlps[2]
    by_hand = torch.nn.functional.normalize(mlp(f[:, :, i // f.shape[3], i % f.shape[3]].transpose(1, 2)), dim=-1)
    assert torch.allclose(emb[2], by_hand, atol=1e-6)
    # given ids are reused: keys and queries at the same locations
    other = g.encode(images.flip(0), g.nce_layers)
    emb_q, ids_q = head(other, 100, patch_ids=ids)
    assert all(torch.equal(a, b) for a, b in zip(ids, ids_q, strict=True))
    assert torch.allclose(emb_q[2], by_hand.flip(0), atol=1e-6)


def test_patch_head_is_deterministic_under_a_seeded_generator(images: torch.Tensor) -> None:
    head = PatchHead([3])
    feats = [2 * images - 1]
    emb_a, ids_a = head(feats, 16, generator=torch.Generator().manual_seed(5))
    emb_b, ids_b = head(feats, 16, generator=torch.Generator().manual_seed(5))
    _, ids_c = head(feats, 16, generator=torch.Generator().manual_seed(6))
    assert torch.equal(ids_a[0], ids_b[0]) and torch.equal(emb_a[0], emb_b[0])
    assert not torch.equal(ids_a[0], ids_c[0])
    with pytest.raises(ConfigError):
        head(feats + feats, 16)
    with pytest.raises(ConfigError):
        head(feats, 0)


def test_init_weights_is_xavier_with_gain_0_02() -> None:
    torch.manual_seed(0)
    g = ResnetGenerator()
    head = PatchHead([128])
    init_weights(g)
    init_weights(head)
    conv = g.layers[3].body[1]  # 128 -> 128, 3x3: fan_in = fan_out = 1152
    assert conv.weight.std().item() == pytest.approx(0.02 * math.sqrt(2 / (1152 + 1152)), rel=0.02)
    lin = head.mlps[0][2]  # 256 -> 256
    assert lin.weight.std().item() == pytest.approx(0.02 * math.sqrt(2 / 512), rel=0.05)
    for m in [*g.modules(), *head.modules()]:
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            assert m.weight.std().item() < 0.05
            assert not m.bias.any()
    norms = nn.Sequential(nn.BatchNorm2d(4), nn.InstanceNorm2d(4, affine=True), nn.LayerNorm(4))
    for p in norms.parameters():
        nn.init.constant_(p, 3.0)
    init_weights(norms)
    for m in norms:
        assert torch.equal(m.weight, torch.ones(4)) and torch.equal(m.bias, torch.zeros(4))

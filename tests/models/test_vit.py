"""The small Vision Transformer: shapes, parameter counts, positional-embedding resizing, checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from selfsup.config.image import BackboneConfig
from selfsup.errors import ConfigError
from selfsup.models.backbones import build_backbone
from selfsup.models.vit import DropPath, VisionTransformer, build_vit


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts_match_deit_without_the_classifier() -> None:
    # timm's vit_tiny_patch16_224 has 5,717,416 parameters, of which the 1000-way head is
    # 192 * 1000 + 1000 = 193,000; vit_small_patch16_224: 22,050,664 with a 385,000 head.
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        assert n_params(build_vit("vit_tiny", 224, 16, 0.0)) == 5_717_416 - 193_000
        assert n_params(build_vit("vit_small", 224, 16, 0.0)) == 22_050_664 - 385_000
    # At 32 px with 4 px patches only the patch projection (3*4*4*192 + 192) and the 65 positions change:
    # 12 blocks * 444,864 + 9,408 + 192 (cls) + 65 * 192 + 384 (final norm) = 5,360,832.
    assert n_params(build_vit("vit_tiny", 32, 4, 0.0)) == 5_360_832


def test_shapes_and_build_backbone() -> None:
    torch.manual_seed(0)
    vit = build_backbone(BackboneConfig(name="vit_tiny", patch_size=4, drop_path=0.1), image_size=32)
    assert isinstance(vit, VisionTransformer) and vit.feature_dim == 192
    assert isinstance(vit.patch_embed, torch.nn.Conv2d) and vit.patch_embed.stride == (4, 4)
    assert vit.pos_embed.shape == (1, 1 + 8 * 8, 192)
    x = torch.randn(2, 3, 32, 32)
    assert vit(x).shape == (2, 192)
    assert vit(torch.randn(2, 3, 16, 8)).shape == (2, 192)  # 4 x 2 grid
    vit.eval()
    assert torch.equal(vit(x), vit(x))  # no stochastic depth in evaluation
    small = build_vit("vit_small", 16, 4, 0.0)
    assert small.feature_dim == 384 and small(torch.randn(1, 3, 16, 16)).shape == (1, 384)


def test_positional_embedding_is_resized_bicubically_for_smaller_inputs() -> None:
    torch.manual_seed(0)
    vit = build_vit("vit_tiny", 32, 4, 0.0).eval()
    assert vit.interpolate_pos_embed(8, 8) is vit.pos_embed  # the trained size: untouched
    with torch.no_grad():
        rows, cols = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
        vit.pos_embed[0, 1:, 0] = rows.flatten()  # token r * 8 + c holds (r, c, 5) in its first channels
        vit.pos_embed[0, 1:, 1] = cols.flatten()
        vit.pos_embed[0, 1:, 2] = 5.0
    pe = vit.interpolate_pos_embed(4, 4)
    assert pe.shape == (1, 17, 192)
    assert torch.equal(pe[0, 0], vit.pos_embed[0, 0])  # the [CLS] position is kept
    grid = pe[0, 1:, :3].reshape(4, 4, 3)
    assert torch.allclose(grid[..., 2], torch.full((4, 4), 5.0), atol=1e-5)  # constants stay constant
    assert torch.allclose(grid[..., 0], grid[..., 0][:, :1].expand(4, 4), atol=1e-5)  # row index: same along a row
    assert torch.allclose(grid[..., 1], grid[..., 1][:1, :].expand(4, 4), atol=1e-5)  # column: same down a column
    assert (grid[1:, 0, 0] > grid[:-1, 0, 0]).all() and (grid[0, 1:, 1] > grid[0, :-1, 1]).all()
    reference = F.interpolate(vit.pos_embed[0, 1:].T.reshape(1, 192, 8, 8), size=(4, 4), mode="bicubic",
                              align_corners=False)
    assert torch.allclose(pe[0, 1:], reference.reshape(192, 16).T, atol=1e-6)

    # A ViT built for 16 px with that resized embedding computes the same features on 16 px inputs.
    native = build_vit("vit_tiny", 16, 4, 0.0).eval()
    native.load_state_dict({**vit.state_dict(), "pos_embed": pe.detach()})
    x = torch.randn(2, 3, 16, 16)
    assert torch.allclose(vit(x), native(x), atol=1e-5)


def test_patch_size_and_name_are_validated() -> None:
    with pytest.raises(ConfigError, match="patch_size=5 must divide"):
        build_vit("vit_tiny", 32, 5, 0.0)
    with pytest.raises(ConfigError, match="not a ViT"):
        build_vit("vit_huge", 32, 4, 0.0)


def test_drop_path_zeroes_whole_samples_and_rescales() -> None:
    torch.manual_seed(0)
    out = DropPath(0.5).train()(torch.ones(64, 3, 2))
    per_sample = out.flatten(1)
    assert set(per_sample.unique().tolist()) == {0.0, 2.0}
    assert (per_sample == per_sample[:, :1]).all()
    assert torch.equal(DropPath(0.5).eval()(torch.ones(4, 2)), torch.ones(4, 2))


def test_default_init_is_truncated_normal_and_xavier_patch_projection() -> None:
    torch.manual_seed(0)
    vit = build_vit("vit_tiny", 32, 4, 0.0)
    qkv = vit.blocks[0].attn.qkv.weight
    assert abs(qkv.std().item() - 0.02) < 0.001 and abs(qkv.mean().item()) < 0.001
    assert torch.equal(vit.blocks[0].attn.qkv.bias, torch.zeros(576))
    bound = (6 / (3 * 4 * 4 + 192)) ** 0.5  # Xavier-uniform over the flattened 3*4*4 patch
    w = vit.patch_embed.weight
    assert w.abs().max() <= bound and w.abs().max() > 0.95 * bound

"""Vision Transformers for small images (Dosovitskiy et al., ICLR 2021, arXiv:2010.11929).

``vit_tiny`` (dim 192, depth 12, 3 heads) and ``vit_small`` (dim 384, depth 12, 6 heads) are the
DeiT sizes (Touvron et al., ICML 2021, arXiv:2012.12877): pre-norm blocks of multi-head
self-attention and a 4x MLP, a [CLS] token, a learned positional embedding for the
``image_size / patch_size`` grid and a final LayerNorm; the forward returns the [CLS] feature.
Inputs of another size (multi-crop's small crops) get the positional embedding resized by
bicubic interpolation, as in DINO (Caron et al., ICCV 2021). Stochastic depth (Huang et al.
2016) rises linearly over the blocks up to ``drop_path``.

Initialisation follows timm / MAE: truncated normal (std 0.02) for linear layers, the
positional embedding and the [CLS] token, and Xavier-uniform for the patch projection seen as a
linear map of the flattened patch. :meth:`VisionTransformer.init_mocov3_` switches to MoCo v3's
recipe (Chen, Xie, He, ICCV 2021, arXiv:2104.02057, Sec. 4 and its reference code): Xavier-uniform
linear layers with Q, K and V treated as separate matrices, a near-zero [CLS] token, and a fixed
2-D sin-cos positional embedding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.errors import ConfigError

SIZES = {"vit_tiny": (192, 12, 3), "vit_small": (384, 12, 6)}


class DropPath(nn.Module):
    """Stochastic depth: zero a sample's residual branch with probability ``p`` (rescaled by 1/(1-p))."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = torch.empty((x.shape[0],) + (1,) * (x.ndim - 1), device=x.device, dtype=x.dtype)
        return x * keep.bernoulli_(1 - self.p) / (1 - self.p)


class Attention(nn.Module):
    """Multi-head self-attention with one fused Q/K/V projection."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, drop_path: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def sincos_pos_embed(dim: int, h: int, w: int, temperature: float = 10000.0) -> torch.Tensor:
    """MoCo v3's fixed 2-D sin-cos embedding (h*w, dim): [sin, cos] of the column, then of the row."""
    if dim % 4:
        raise ConfigError(f"a 2-D sin-cos position embedding needs a width divisible by 4, got {dim}")
    rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                                indexing="ij")
    omega = 1.0 / temperature ** (torch.arange(dim // 4, dtype=torch.float32) / (dim // 4))
    out_w = cols.flatten()[:, None] * omega[None]
    out_h = rows.flatten()[:, None] * omega[None]
    return torch.cat([out_w.sin(), out_w.cos(), out_h.sin(), out_h.cos()], dim=1)


class VisionTransformer(nn.Module):
    """ViT encoder: images (B, 3, H, W) -> [CLS] features (B, dim)."""

    def __init__(self, image_size: int, patch_size: int, dim: int, depth: int, heads: int,
                 mlp_ratio: float = 4.0, drop_path: float = 0.0) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.grid_size = image_size // patch_size
        self.feature_dim = dim
        self.patch_embed = nn.Conv2d(3, dim, patch_size, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid_size**2, dim))
        rates = [drop_path * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, r) for r in rates)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.xavier_uniform_(self.patch_embed.weight.view(self.feature_dim, -1))
        nn.init.zeros_(self.patch_embed.bias)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @torch.no_grad()
    def init_mocov3_(self, sincos: bool = True) -> None:
        """MoCo v3's initialisation (its vits.py): Xavier-uniform linear layers, the fused Q/K/V
        weight as three separate d x d matrices, [CLS] ~ N(0, 1e-6), Xavier-uniform patch
        projection; with ``sincos`` the positional embedding becomes the fixed 2-D sin-cos one
        (zero for [CLS]) and is no longer trained."""
        for m in self.modules():
            if isinstance(m, Attention):
                bound = math.sqrt(6.0 / (m.qkv.weight.shape[0] // 3 + m.qkv.weight.shape[1]))
                nn.init.uniform_(m.qkv.weight, -bound, bound)
                nn.init.zeros_(m.qkv.bias)
                nn.init.xavier_uniform_(m.proj.weight)
                nn.init.zeros_(m.proj.bias)
            elif isinstance(m, Block):
                for lin in (m.mlp[0], m.mlp[2]):
                    nn.init.xavier_uniform_(lin.weight)
                    nn.init.zeros_(lin.bias)
        nn.init.normal_(self.cls_token, std=1e-6)
        nn.init.xavier_uniform_(self.patch_embed.weight.view(self.feature_dim, -1))
        nn.init.zeros_(self.patch_embed.bias)
        if sincos:
            self.pos_embed.zero_()
            self.pos_embed[0, 1:] = sincos_pos_embed(self.feature_dim, self.grid_size, self.grid_size)
            self.pos_embed.requires_grad_(False)

    def interpolate_pos_embed(self, h: int, w: int) -> torch.Tensor:
        """The positional embedding (1, 1 + h*w, dim) for an h x w patch grid (bicubic resize)."""
        g = self.grid_size
        if (h, w) == (g, g):
            return self.pos_embed
        cls, grid = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        grid = grid.reshape(1, g, g, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid.float(), size=(h, w), mode="bicubic", align_corners=False).to(grid.dtype)
        return torch.cat([cls, grid.permute(0, 2, 3, 1).reshape(1, h * w, -1)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        h, w = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.interpolate_pos_embed(h, w)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 0]


def build_vit(name: str, image_size: int, patch_size: int, drop_path: float) -> VisionTransformer:
    """``vit_tiny`` or ``vit_small`` with a positional embedding for ``image_size`` / ``patch_size``."""
    if name not in SIZES:
        raise ConfigError(f"backbone.name={name!r} is not a ViT; allowed: {', '.join(SIZES)}")
    if image_size % patch_size:
        raise ConfigError(f"backbone.patch_size={patch_size} must divide the view size views.size={image_size}; "
                          f"pick a divisor, e.g. -S backbone.patch_size=4")
    dim, depth, heads = SIZES[name]
    return VisionTransformer(image_size, patch_size, dim, depth, heads, drop_path=drop_path)

"""A small PixelCNN over a grid of discrete codes: the VQ-VAE's autoregressive prior.

van den Oord, Kalchbrenner, Kavukcuoglu, ICML 2016, "Pixel Recurrent Neural Networks", Sec. 3.4:
convolutions whose kernels are masked so that position (i, j) sees only the positions before it in
raster order; the first layer (mask A) also hides (i, j) itself, later ones (mask B) include it.
p(c) = prod_(i,j) p(c_ij | c_<ij) is a softmax over the K codes at every position. The VQ-VAE paper
(van den Oord et al. 2017, Sec. 3.2 / 4.2) fits such a prior to the codes of the trained encoder and
samples images by drawing a code grid from it and decoding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MaskedConv2d(nn.Conv2d):
    """A conv whose kernel sees the rows above and the columns to the left in its own row (``mask`` A
    excludes the centre, B includes it)."""

    def __init__(self, mask: str, cin: int, cout: int, kernel: int) -> None:
        super().__init__(cin, cout, kernel, padding=kernel // 2)
        if mask not in ("A", "B"):
            raise ValueError(f"mask must be 'A' or 'B', got {mask!r}")
        m = torch.ones_like(self.weight)
        c = kernel // 2
        m[:, :, c, c + (mask == "B"):] = 0
        m[:, :, c + 1:] = 0
        self.register_buffer("mask", m, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class PixelCNNPrior(nn.Module):
    """Embedding of the K codes, one mask-A 7x7 layer, ``layers`` residual mask-B 3x3 layers, K logits per
    position."""

    def __init__(self, n_codes: int, channels: int = 64, layers: int = 4) -> None:
        super().__init__()
        self.n_codes = n_codes
        self.embed = nn.Embedding(n_codes, channels)
        self.first = MaskedConv2d("A", channels, channels, 7)
        self.blocks = nn.ModuleList(MaskedConv2d("B", channels, channels, 3) for _ in range(layers))
        self.out = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, n_codes, 1))

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """Logits (B, K, h, w) of every position given the codes before it; ``codes`` is (B, h, w) long."""
        x = self.first(self.embed(codes).permute(0, 3, 1, 2))
        for block in self.blocks:
            x = x + block(F.relu(x))
        return self.out(x)

    def nll(self, codes: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood per position, in nats."""
        return F.cross_entropy(self(codes).float(), codes)

    @torch.no_grad()
    def sample(self, n: int, shape: tuple[int, int], generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` code grids of ``shape`` drawn position by position in raster order, (n, h, w) long."""
        device = self.embed.weight.device
        codes = torch.zeros(n, *shape, dtype=torch.long, device=device)
        for i in range(shape[0]):
            for j in range(shape[1]):
                probs = F.softmax(self(codes)[:, :, i, j].float(), dim=1)
                codes[:, i, j] = torch.multinomial(probs.cpu(), 1, generator=generator)[:, 0].to(device)
        return codes

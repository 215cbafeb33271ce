"""The SimCLR augmentation family and the view generators built from it.

SimCLR (Chen et al., 2020, arXiv:2002.05709, Sec. 3 and Appendix A): random resized crop, horizontal
flip, colour jitter (applied with probability p), random grayscale, Gaussian blur, and solarize
(added by BYOL). Each sample in a batch draws its own random parameters.

Two interchangeable backends implement the same distribution:

- ``batched``: kornia augmentations over a whole uint8 batch on the training device (the GPU when
  there is one); the per-sample randomness is drawn by kornia for each image of the batch.
- ``per_sample``: a torchvision transforms v2 pipeline applied image by image on the CPU.

``benchmarks/bench_step.py`` compares their throughput.
"""

from __future__ import annotations

import kornia.augmentation as K
import torch
from torch import nn
from torchvision.transforms import v2

from selfsup.config import ViewsConfig


def _blur_kernel(cfg: ViewsConfig, size: int) -> int:
    k = max(3, int(cfg.blur.kernel_fraction * size))
    return k if k % 2 else k + 1


def _batched(cfg: ViewsConfig, mean: list[float], std: list[float], size: int,
             scale: tuple[float, float]) -> nn.Sequential:
    cj = cfg.color_jitter
    ops: list[nn.Module] = [
        K.RandomResizedCrop((size, size), scale=scale, ratio=cfg.crop_ratio, align_corners=False),
    ]
    if cfg.hflip > 0:
        ops.append(K.RandomHorizontalFlip(p=cfg.hflip))
    if cj.p > 0:
        ops.append(K.ColorJitter(cj.brightness, cj.contrast, cj.saturation, cj.hue, p=cj.p))
    if cfg.grayscale > 0:
        ops.append(K.RandomGrayscale(p=cfg.grayscale))
    if cfg.blur.p > 0:
        ops.append(K.RandomGaussianBlur(_blur_kernel(cfg, size), cfg.blur.sigma, p=cfg.blur.p))
    if cfg.solarize > 0:
        ops.append(K.RandomSolarize(thresholds=0.0, additions=0.0, p=cfg.solarize))
    ops.append(K.Normalize(torch.tensor(mean), torch.tensor(std)))
    return nn.Sequential(*ops)


def _per_sample(cfg: ViewsConfig, mean: list[float], std: list[float], size: int,
                scale: tuple[float, float]) -> v2.Compose:
    cj = cfg.color_jitter
    ops: list[nn.Module] = [
        v2.RandomResizedCrop(size, scale=scale, ratio=cfg.crop_ratio, antialias=True),
        v2.RandomHorizontalFlip(p=cfg.hflip),
        v2.RandomApply([v2.ColorJitter(cj.brightness, cj.contrast, cj.saturation, cj.hue)], p=cj.p),
        v2.RandomGrayscale(p=cfg.grayscale),
    ]
    if cfg.blur.p > 0:
        ops.append(v2.RandomApply([v2.GaussianBlur(_blur_kernel(cfg, size), cfg.blur.sigma)], p=cfg.blur.p))
    ops += [v2.ToDtype(torch.float32, scale=True)]
    if cfg.solarize > 0:
        ops.append(v2.RandomSolarize(threshold=0.5, p=cfg.solarize))
    ops.append(v2.Normalize(mean, std))
    return v2.Compose(ops)


class ViewGenerator:
    """Turns a uint8 batch (B, 3, H, W) into independently augmented float views.

    Returns ``n_views`` large views (side ``cfg.size``, scale ``cfg.crop_scale``) followed by
    ``n_small`` small ones (``cfg.multi_crop``: side ``size``, scale ``crop_scale``), all drawn
    from the same colour and blur distribution.
    """

    def __init__(self, cfg: ViewsConfig, mean: list[float], std: list[float], n_views: int = 2,
                 n_small: int = 0) -> None:
        self.cfg = cfg
        self.n_views = n_views
        self.n_small = n_small
        build = _batched if cfg.backend == "batched" else _per_sample
        self.large = build(cfg, mean, std, cfg.size, cfg.crop_scale)
        mc = cfg.multi_crop
        self.small = build(cfg, mean, std, mc.size, mc.crop_scale) if n_small else None

    def _apply(self, pipeline: nn.Module, images: torch.Tensor, x: torch.Tensor | None,
               device: torch.device) -> torch.Tensor:
        if x is not None:
            return pipeline(x)
        return torch.stack([pipeline(img) for img in images]).to(device, non_blocking=True)

    def __call__(self, images: torch.Tensor, device: torch.device) -> list[torch.Tensor]:
        x = None
        if self.cfg.backend == "batched":
            x = images.to(device, non_blocking=True).float().div_(255.0)
        views = [self._apply(self.large, images, x, device) for _ in range(self.n_views)]
        views += [self._apply(self.small, images, x, device) for _ in range(self.n_small)]
        return views


class EvalTransform(nn.Module):
    """Deterministic evaluation preprocessing: resize to the view size, then normalise."""

    def __init__(self, size: int, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.size = size
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float().div(255.0)
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear",
                                          antialias=True, align_corners=False)
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

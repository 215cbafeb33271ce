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

from selfsup.augment.background import BackgroundAugment
from selfsup.config.image import ViewsConfig
from selfsup.methods.base import Views


def _blur_kernel(cfg: ViewsConfig, size: int) -> int:
    k = max(3, int(cfg.blur.kernel_fraction * size))
    return k if k % 2 else k + 1


def _photometric_batched(cfg: ViewsConfig, mean: list[float], std: list[float], size: int) -> nn.Sequential:
    cj = cfg.color_jitter
    ops: list[nn.Module] = []
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


def _geometric_batched(cfg: ViewsConfig, size: int, scale: tuple[float, float]) -> nn.Sequential:
    ops: list[nn.Module] = [
        K.RandomResizedCrop((size, size), scale=scale, ratio=cfg.crop_ratio, align_corners=False),
    ]
    if cfg.hflip > 0:
        ops.append(K.RandomHorizontalFlip(p=cfg.hflip))
    return nn.Sequential(*ops)


def _photometric_per_sample(cfg: ViewsConfig, mean: list[float], std: list[float], size: int) -> v2.Compose:
    cj = cfg.color_jitter
    ops: list[nn.Module] = [
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


def _geometric_per_sample(cfg: ViewsConfig, size: int, scale: tuple[float, float]) -> v2.Compose:
    return v2.Compose([
        v2.RandomResizedCrop(size, scale=scale, ratio=cfg.crop_ratio, antialias=True),
        v2.RandomHorizontalFlip(p=cfg.hflip),
    ])


class ViewPipeline:
    """One kind of view (side ``size``, crop scale ``scale``): geometric then photometric augmentations.

    The geometric part (random resized crop, flip) sees the image stacked with its foreground mask
    when one is given, so a crop crops the mask and a flip flips it with the same parameters.
    """

    def __init__(self, cfg: ViewsConfig, mean: list[float], std: list[float], size: int,
                 scale: tuple[float, float]) -> None:
        self.batched = cfg.backend == "batched"
        if self.batched:
            self.geometric, self.photometric = _geometric_batched(cfg, size, scale), _photometric_batched(
                cfg, mean, std, size)
        else:
            self.geometric, self.photometric = _geometric_per_sample(cfg, size, scale), _photometric_per_sample(
                cfg, mean, std, size)

    def __call__(self, x: torch.Tensor, alpha: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Views of ``x`` (float in [0, 1] for the batched backend, uint8 for per-sample) and the
        masks cropped like them (alpha (B, 1, H, W) in [0, 1]; None when no alpha is given)."""
        stacked = x if alpha is None else torch.cat([x, alpha.to(x.dtype) * (1 if self.batched else 255)], 1)
        if self.batched:
            out = self.geometric(stacked)
            views = self.photometric(out[:, :3])
        else:
            crops = [self.geometric(img) for img in stacked]
            views = torch.stack([self.photometric(c[:3]) for c in crops])
            out = torch.stack(crops)
        if alpha is None:
            return views, None
        mask = out[:, 3:].float()
        return views, mask if self.batched else mask / 255.0


class ViewGenerator:
    """Turns a uint8 batch (B, 3, H, W) into independently augmented float :class:`Views`.

    ``n_views`` large views (side ``cfg.size``, scale ``cfg.crop_scale``) and ``n_small`` small ones
    (``cfg.multi_crop``: side ``size``, scale ``crop_scale``), all drawn from the same colour and
    blur distribution, in that order. With a :class:`BackgroundAugment`, each view first draws its
    background augmentation; with ``hard_negative`` (BG_Swaps) the second large view is the swapped
    positive and one more view, the hard negative, is drawn last.
    """

    def __init__(self, cfg: ViewsConfig, mean: list[float], std: list[float], n_views: int = 2,
                 n_small: int = 0, background: BackgroundAugment | None = None, hard_negative: bool = False) -> None:
        if hard_negative and (background is None or n_views < 2):
            raise ValueError("a hard negative (BG_Swaps) needs a background bank and two large views")
        self.cfg = cfg
        self.n_views = n_views
        self.n_small = n_small
        self.background = background
        self.hard_negative = hard_negative
        self.large = ViewPipeline(cfg, mean, std, cfg.size, cfg.crop_scale)
        mc = cfg.multi_crop
        self.small = ViewPipeline(cfg, mean, std, mc.size, mc.crop_scale) if n_small else None

    def _by_role(self, tensors: list[torch.Tensor]) -> Views:
        """Tensors in the order they were drawn (large, small, hard negative) as :class:`Views`."""
        n, s = self.n_views, self.n_small
        return Views(tensors[:n], tensors[n : n + s], tensors[n + s] if self.hard_negative else None)

    def __call__(self, images: torch.Tensor, device: torch.device, index: torch.Tensor | None = None,
                 with_masks: bool = False) -> Views:
        """The views of ``images`` (dataset rows ``index``, needed with background augmentation);
        with ``with_masks`` also each view's cropped foreground mask (``Views.masks``)."""
        batched = self.cfg.backend == "batched"
        target = device if batched else torch.device("cpu")
        bg = self.background
        if bg is not None and index is None:
            raise ValueError("background augmentation needs the dataset index of each image")
        if bg is None and not with_masks:
            x = images.to(target, non_blocking=True)
            if batched:
                x = x.float().div_(255.0)
            views = [self.large(x)[0] for _ in range(self.n_views)]
            views += [self.small(x)[0] for _ in range(self.n_small)]
            return self._by_role(views).map(lambda v: v.to(device, non_blocking=True))
        if bg is None:
            raise ValueError("masks travel with the views only when a background bank is given")
        x = images.to(target, non_blocking=True).float().div_(255.0)
        alpha = bg.alpha(index, target)
        sources: list[tuple[ViewPipeline, torch.Tensor, torch.Tensor]] = []
        positive = None
        if self.hard_negative:
            positive, hard, hard_alpha, _ = bg.swap(x, alpha, index)
        for v in range(self.n_views):
            src = bg.apply(positive if (positive is not None and v == 1) else x, alpha, index)
            sources.append((self.large, src, alpha))
        sources += [(self.small, bg.apply(x, alpha, index), alpha) for _ in range(self.n_small)]
        if self.hard_negative:
            sources.append((self.large, hard, hard_alpha))
        views, masks = [], []
        for pipeline, src, a in sources:
            if not batched:
                src = src.mul(255.0).round_().to(torch.uint8)
            view, mask = pipeline(src, a)
            views.append(view.to(device, non_blocking=True))
            masks.append(mask.to(device, non_blocking=True))
        out = self._by_role(views)
        if with_masks:
            out.masks = self._by_role(masks)
        return out


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

"""Background augmentations: BG_RM, BG_Random and BG_Swaps.

Ryali, Schwab, Morcos, "Characterizing and improving the robustness of self-supervised learning
through background augmentations" (arXiv:2103.12719, 2021), Sec. 3. With a foreground mask
``m`` (1 on the subject) an image ``x`` is recomposed as ``m * x + (1 - m) * b``:

- ``BG_RM``: ``b`` is a constant grey (``fill``);
- ``BG_Random``: ``b`` is the background of another image of the dataset with its own
  foreground in-painted away (the ``backgrounds`` stage), so no second subject appears;
- ``BG_Swaps`` (methods with negatives): the positive view of image i gets a random background,
  and a hard negative ``m_j * x_j + (1 - m_j) * bg_i`` (another image's subject on image i's
  background) joins the negatives of i's anchor.

BG_RM and BG_Random are drawn independently for each image and each view, with probabilities
``rm`` and ``random`` (one excludes the other); BG_Swaps is drawn per image with ``swaps``.
Composition happens on the full image, before the geometric augmentations, which then crop and
flip the mask together with the image (:class:`selfsup.augment.views.ViewGenerator`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from selfsup.config.image import BackgroundConfig
from selfsup.errors import DataError


def paste(foreground: torch.Tensor, alpha: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """``alpha * foreground + (1 - alpha) * background``; images (B, 3, H, W), alpha (B, 1, H, W)."""
    return alpha * foreground + (1.0 - alpha) * background


@dataclass
class BackgroundBank:
    """Foreground masks and foreground-free backgrounds of the pretraining images, in their order.

    ``masks`` bool (N, H, W); ``backgrounds`` uint8 (N, 3, H, W).
    """

    masks: torch.Tensor
    backgrounds: torch.Tensor

    def __post_init__(self) -> None:
        n, h, w = self.masks.shape
        if self.backgrounds.shape != (n, 3, h, w):
            raise DataError(f"background bank: {tuple(self.backgrounds.shape)} backgrounds for "
                            f"{tuple(self.masks.shape)} masks; rerun `dvc repro backgrounds`")

    @classmethod
    def load(cls, folder: Path) -> BackgroundBank | None:
        """The bank written by the ``backgrounds`` stage, or None where that stage found it off."""
        folder = Path(folder)
        meta_path = folder / "meta.json"
        if not meta_path.is_file():
            raise DataError(f"no background bank at {folder} (missing meta.json); run `dvc repro backgrounds`")
        meta = json.loads(meta_path.read_text())
        if not meta.get("enabled"):
            return None
        try:
            masks = np.load(folder / "masks.npy")
            backgrounds = np.load(folder / "backgrounds.npy")
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"background bank {folder} is unreadable ({exc}); "
                            f"rerun `dvc repro -f backgrounds`") from exc
        return cls(torch.from_numpy(masks.astype(bool)),
                   torch.from_numpy(np.ascontiguousarray(backgrounds.transpose(0, 3, 1, 2))))

    def __len__(self) -> int:
        return len(self.masks)


class BackgroundAugment:
    """Draws and applies the background augmentations of one batch (float images in [0, 1])."""

    def __init__(self, cfg: BackgroundConfig, bank: BackgroundBank) -> None:
        self.cfg = cfg
        self.bank = bank

    def alpha(self, index: torch.Tensor, device: torch.device) -> torch.Tensor:
        """The masks of images ``index`` as float alpha (B, 1, H, W)."""
        return self.bank.masks[index.cpu()].to(device).float().unsqueeze(1)

    def backgrounds(self, index: torch.Tensor, device: torch.device) -> torch.Tensor:
        """The foreground-free backgrounds of images ``index`` as float (B, 3, H, W) in [0, 1]."""
        return self.bank.backgrounds[index.cpu()].to(device).float().div_(255.0)

    def other_index(self, index: torch.Tensor) -> torch.Tensor:
        """For each image, a uniformly drawn different image of the bank."""
        n = len(self.bank)
        return (index.cpu() + torch.randint(1, max(n, 2), index.shape)) % n

    def apply(self, images: torch.Tensor, alpha: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """One view's BG_RM / BG_Random draw for every image of the batch."""
        u = torch.rand(len(images)).to(images.device).view(-1, 1, 1, 1)
        removed = u < self.cfg.rm
        randomised = (u >= self.cfg.rm) & (u < self.cfg.rm + self.cfg.random)
        out = images
        if self.cfg.rm > 0:
            out = torch.where(removed, paste(images, alpha, torch.full_like(images, self.cfg.fill)), out)
        if self.cfg.random > 0:
            elsewhere = self.backgrounds(self.other_index(index), images.device)
            out = torch.where(randomised, paste(images, alpha, elsewhere), out)
        return out

    def swap(self, images: torch.Tensor, alpha: torch.Tensor,
             index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """BG_Swaps for the batch: ``(positive, hard_negative, hard_alpha, swapped)``.

        Where ``swapped`` (drawn with probability ``swaps``) the positive is image i's subject on a
        random other background and the hard negative is the next image's subject (i + 1 within the
        batch) on image i's own foreground-free background; elsewhere the positive is image i and the
        hard negative the next image unchanged (an ordinary negative).
        """
        swapped = (torch.rand(len(images)) < self.cfg.swaps).to(images.device).view(-1, 1, 1, 1)
        positive = torch.where(swapped, paste(images, alpha, self.backgrounds(self.other_index(index),
                                                                                images.device)), images)
        other, other_alpha = images.roll(-1, 0), alpha.roll(-1, 0)
        hard = torch.where(swapped, paste(other, other_alpha, self.backgrounds(index, images.device)), other)
        return positive, hard, other_alpha, swapped.view(-1)

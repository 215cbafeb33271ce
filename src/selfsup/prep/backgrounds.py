"""Foreground-free backgrounds for BG_Random and BG_Swaps (Ryali, Schwab, Morcos 2021, Sec. 3).

Each pretraining image has its estimated foreground (the ``segment`` stage's mask, grown by
``dilate`` pixels to cover soft edges) filled in by Telea's fast-marching in-painting
(``cv2.inpaint``, Telea, J. Graphics Tools 2004), so pasting a subject onto another image's
background never shows that image's own subject next to it.
"""

from __future__ import annotations

import cv2
import numpy as np
from tqdm import tqdm


def grow(mask: np.ndarray, pixels: int) -> np.ndarray:
    """``mask`` (H, W) bool dilated by a (2 pixels + 1)-square."""
    if pixels == 0:
        return mask
    kernel = np.ones((2 * pixels + 1, 2 * pixels + 1), np.uint8)
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


def inpaint_backgrounds(images: np.ndarray, masks: np.ndarray, radius: int = 3, dilate: int = 1,
                        progress: bool = True) -> np.ndarray:
    """uint8 (N, H, W, 3) images with their (dilated) foreground masks in-painted away."""
    out = np.empty_like(np.asarray(images))
    for i in tqdm(range(len(images)), desc="backgrounds (in-paint)", disable=not progress, mininterval=1.0):
        hole = grow(np.asarray(masks[i]), dilate).astype(np.uint8)
        image = np.ascontiguousarray(images[i])
        out[i] = cv2.inpaint(image, hole, radius, cv2.INPAINT_TELEA) if hole.any() else image
    return out

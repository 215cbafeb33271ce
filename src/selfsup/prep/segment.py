"""Foreground masks without labels, for background augmentation.

Three sources (``segment.source``):

- ``boundary`` (default, classical, runs anywhere): the *background prior* of Wei, Wen, Zhu, Sun,
  "Geodesic saliency using background priors" (ECCV 2012) and Zhu, Liang, Wei, Sun, "Saliency
  optimization from robust background detection" (CVPR 2014): the image border is mostly
  background, so a pixel's saliency is its colour distance in CIE Lab to the border. Here
  ``S(p) = mean of the k smallest ||Lab(p) - Lab(b)||`` over the border pixels b (a ring of
  ``border`` pixels; the k-nearest mean is robust to a foreground that touches the border),
  thresholded per image with Otsu's method. Optionally refined by GrabCut (Rother, Kolmogorov,
  Blake, SIGGRAPH 2004; ``cv2.grabCut``) seeded with that mask, the border ring as background.
- ``spectral_residual``: Hou and Zhang, "Saliency detection: a spectral residual approach"
  (CVPR 2007), Eq. 5-8: ``S = G * |F^-1[exp(R(f) + i P(f))]|^2`` with R the log-amplitude
  spectrum minus its 3x3 local mean, then Otsu and optional GrabCut as above.
- ``deeplabv3``: torchvision's DeepLabV3 (MobileNetV3-Large) trained on COCO's 20 VOC classes;
  foreground is every pixel whose arg-max class is not background. Its weights are read from
  ``segment.weights`` or the torch hub cache and never downloaded here: when absent the stage
  stops and says where to put them.

``ground_truth`` copies the dataset's own masks (digits-bg has them) for ablations that compare
estimated and true masks. :func:`mask_iou` scores any source against the ground truth.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import kornia
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from selfsup.config.image import SegmentConfig
from selfsup.errors import ConfigError, DataError

DEEPLAB_FILE = "deeplabv3_mobilenet_v3_large-fc3c493d.pth"
DEEPLAB_URL = f"https://download.pytorch.org/models/{DEEPLAB_FILE}"


def border_ring(height: int, width: int, border: int) -> np.ndarray:
    """Bool (H, W) mask of the outer ``border`` pixels."""
    ring = np.ones((height, width), dtype=bool)
    ring[border:height - border, border:width - border] = False
    return ring


def boundary_saliency(images: torch.Tensor, border: int = 1, k: int = 8) -> torch.Tensor:
    """Background-prior saliency of uint8 images (B, H, W, 3): (B, H, W) float.

    ``S(p)`` is the mean Lab distance from pixel p to its ``k`` nearest border-pixel colours.
    """
    rgb = images.permute(0, 3, 1, 2).float() / 255.0
    lab = kornia.color.rgb_to_lab(rgb).permute(0, 2, 3, 1)  # (B, H, W, 3)
    b, h, w, _ = lab.shape
    ring = torch.from_numpy(border_ring(h, w, border)).to(lab.device)
    border_colours = lab[:, ring]  # (B, n_border, 3)
    dist = torch.cdist(lab.reshape(b, h * w, 3), border_colours)  # (B, HW, n_border)
    nearest = dist.topk(min(k, border_colours.shape[1]), dim=2, largest=False).values
    return nearest.mean(2).reshape(b, h, w)


def spectral_residual_saliency(image: np.ndarray, work_size: int = 64, sigma: float = 2.5) -> np.ndarray:
    """Spectral-residual saliency (Hou and Zhang 2007, Eq. 5-8) of one uint8 (H, W, 3) image."""
    h, w = image.shape[:2]
    grey = cv2.resize(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32), (work_size, work_size),
                      interpolation=cv2.INTER_AREA)
    spectrum = np.fft.fft2(grey)
    log_amplitude = np.log(np.abs(spectrum) + 1e-8)
    residual = log_amplitude - cv2.blur(log_amplitude, (3, 3))
    saliency = np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(spectrum)))) ** 2
    saliency = cv2.GaussianBlur(saliency.astype(np.float32), (0, 0), sigma)
    return cv2.resize(saliency, (w, h), interpolation=cv2.INTER_LINEAR)


def otsu_mask(saliency: np.ndarray) -> np.ndarray:
    """Bool mask of the pixels above the Otsu threshold of ``saliency`` (rescaled to 0-255)."""
    top = float(saliency.max())
    if top <= 0:
        return np.zeros(saliency.shape, dtype=bool)
    grey = np.clip(saliency / top * 255.0, 0, 255).astype(np.uint8)
    _, mask = cv2.threshold(grey, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return mask.astype(bool)


def grabcut_refine(image: np.ndarray, init: np.ndarray, iterations: int = 5, border: int = 1) -> np.ndarray:
    """GrabCut of a uint8 RGB image seeded with ``init`` as probable foreground, the rest as
    probable background and the border ring (outside ``init``) as certain background."""
    if init.all() or not init.any():
        return init.copy()
    seeds = np.where(init, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    seeds[border_ring(*init.shape, border) & ~init] = cv2.GC_BGD
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(np.ascontiguousarray(image[..., ::-1]), seeds, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    return (seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)


def classical_masks(images: np.ndarray, cfg: SegmentConfig, progress: bool = True) -> np.ndarray:
    """Bool (N, H, W) foreground masks of uint8 (N, H, W, 3) images from a classical source."""
    masks = np.zeros(images.shape[:3], dtype=bool)
    bar = tqdm(total=len(images), desc=f"segment ({cfg.source})", disable=not progress)
    for start in range(0, len(images), cfg.batch_size):
        chunk = np.array(images[start:start + cfg.batch_size])
        if cfg.source == "boundary":
            saliency = boundary_saliency(torch.from_numpy(chunk), cfg.border, cfg.nearest).numpy()
        else:
            saliency = np.stack([spectral_residual_saliency(im) for im in chunk])
        for i, (image, sal) in enumerate(zip(chunk, saliency, strict=True)):
            mask = otsu_mask(sal)
            if cfg.grabcut:
                mask = grabcut_refine(image, mask, cfg.grabcut_iterations, cfg.border)
            masks[start + i] = mask
        bar.update(len(chunk))
    bar.close()
    return masks


def deeplab_weights_path(cfg: SegmentConfig) -> Path:
    """The DeepLabV3 weights file to load: ``segment.weights`` or the torch hub cache copy."""
    if cfg.weights:
        path = Path(cfg.weights)
        if not path.is_file():
            raise DataError(f"segment.weights={cfg.weights!r} does not exist; download {DEEPLAB_URL} there, "
                            f"or set segment.source=boundary for the classical masks")
        return path
    path = Path(torch.hub.get_dir()) / "checkpoints" / DEEPLAB_FILE
    if not path.is_file():
        raise DataError(f"segment.source=deeplabv3 needs the pretrained weights at {path} (not found); "
                        f"download {DEEPLAB_URL} to that path or set segment.weights=<file>, "
                        f"or set segment.source=boundary for the classical masks")
    return path


def deeplab_masks(images: np.ndarray, cfg: SegmentConfig, device: str = "cpu", progress: bool = True) -> np.ndarray:
    """Bool (N, H, W) masks: pixels DeepLabV3 (MobileNetV3-Large, VOC classes) labels non-background."""
    from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large

    path = deeplab_weights_path(cfg)
    model = deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21, aux_loss=True)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise DataError(f"{path} is not a DeepLabV3 MobileNetV3-Large state dict ({exc}); "
                        f"download {DEEPLAB_URL} again") from exc
    model.eval().to(device)
    mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1)
    masks = np.zeros(images.shape[:3], dtype=bool)
    h, w = images.shape[1:3]
    with torch.inference_mode():
        for start in tqdm(range(0, len(images), cfg.batch_size), desc="segment (deeplabv3)", disable=not progress):
            chunk = torch.from_numpy(np.array(images[start:start + cfg.batch_size])).to(device)
            x = chunk.permute(0, 3, 1, 2).float() / 255.0
            x = F.interpolate(x, size=(cfg.network_size, cfg.network_size), mode="bilinear", align_corners=False)
            logits = model((x - mean) / std)["out"]
            logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
            masks[start:start + len(chunk)] = (logits.argmax(1) != 0).cpu().numpy()
    return masks


def estimate_masks(images: np.ndarray, cfg: SegmentConfig, ground_truth: np.ndarray | None = None,
                   progress: bool = True) -> np.ndarray:
    """Foreground masks of ``images`` from ``cfg.source``."""
    if cfg.source == "ground_truth":
        if ground_truth is None:
            raise ConfigError("segment.source=ground_truth but this dataset has no ground-truth masks; "
                              "set segment.source=boundary (or deeplabv3)")
        return np.asarray(ground_truth, dtype=bool).copy()
    if cfg.source == "deeplabv3":
        return deeplab_masks(images, cfg, progress=progress)
    return classical_masks(images, cfg, progress=progress)


def mask_iou(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-image intersection over union of bool (N, H, W) masks; 1 where both are empty."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    inter = (pred & truth).reshape(len(pred), -1).sum(1)
    union = (pred | truth).reshape(len(pred), -1).sum(1)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)

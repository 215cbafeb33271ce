"""`digits-bg`: the embedded image dataset, built offline from scikit-learn's bundled files.

Each composite takes one of the 1,797 real 8x8 handwritten digit scans of
``sklearn.datasets.load_digits``, upscales it to a random size, gives it a random colour and
pastes it at a random position onto a random crop of one of the photographs bundled with
``sklearn.datasets.load_sample_images``. The scan's intensity, contrast-stretched by
``stroke_gain``, is the paste's alpha, so strokes are opaque with soft edges. Each split draws its
backgrounds from a pool of ``background_pool`` random crops, so the background identifies a
composite no better than its digit does. The label is the digit class, the alpha gives a
ground-truth foreground mask (alpha > 0.5) for free, and the split is made by source scan, so no
scan appears in both train and test.

Two controls switch a nuisance off while every random draw stays the same (so the composites keep
their scan, size and position): ``background: black`` pastes onto black instead of a photo, and
``digit_colour: white`` paints every digit white. With both, the data is plain white digits on
black; ``benchmarks/methods_table.py`` uses these variants to show what the nuisances cost.

Every composite also records the generative factors it was made from (:data:`FACTORS`): the
digit class, the hue in [0, 1) of its colour, the pasted side in pixels, the top-left paste
position (x, y) in pixels and the index of its background crop in the split's pool. A factor a
control switches off is recorded as the constant it becomes: hue 0 with ``digit_colour: white``
(white has no hue), background 0 with ``background: black`` (every background is the same
black); disentanglement metrics skip such constant factors. The factors are computed from draws
already made, so recording them changes no image.
"""

from __future__ import annotations

import colorsys

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits, load_sample_images

from selfsup.config.image import DigitsBgConfig
from selfsup.data.store import Factor, ImageSplit

CLASSES = [str(d) for d in range(10)]
FACTORS = [
    Factor("digit", "categorical"),
    Factor("hue", "continuous"),
    Factor("scale", "discrete"),
    Factor("x", "discrete"),
    Factor("y", "discrete"),
    Factor("background", "categorical"),
]


def _upscale(scans: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upscaling of (n, 8, 8) scans in [0, 1] to (n, size, size)."""
    x = torch.from_numpy(scans).float()[:, None]
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)[:, 0].numpy()


def _background(photos: list[np.ndarray], rng: np.random.Generator, spec: DigitsBgConfig) -> np.ndarray:
    photo = photos[rng.integers(len(photos))]
    h, w, _ = photo.shape
    side = int(round(spec.image_size * rng.uniform(*spec.background_zoom)))
    side = min(side, h, w)
    y0 = rng.integers(0, h - side + 1)
    x0 = rng.integers(0, w - side + 1)
    crop = torch.from_numpy(np.ascontiguousarray(photo[y0 : y0 + side, x0 : x0 + side])).permute(2, 0, 1)[None].float()
    out = F.interpolate(crop, size=(spec.image_size, spec.image_size), mode="bilinear",
                        antialias=True, align_corners=False)
    return out[0].permute(1, 2, 0).numpy()


def digit_alpha(scan: np.ndarray, size: int, spec: DigitsBgConfig = DigitsBgConfig()) -> np.ndarray:
    """The paste's alpha of an 8x8 ``scan`` in [0, 1] upscaled to ``size`` pixels: contrast-stretched by
    ``stroke_gain`` so strokes are opaque with soft edges."""
    return np.clip(spec.stroke_gain * (_upscale(scan[None], size)[0] - 0.5) + 0.5, 0.0, 1.0)


def _placed_alpha(scan: np.ndarray, size: int, x: int, y: int, spec: DigitsBgConfig) -> np.ndarray:
    alpha = np.zeros((spec.image_size, spec.image_size), dtype=np.float32)
    alpha[y : y + size, x : x + size] = digit_alpha(scan, size, spec)
    return alpha


def plain_digit(scan: np.ndarray, size: int, x: int, y: int, spec: DigitsBgConfig = DigitsBgConfig()) -> np.ndarray:
    """The digit a composite of ``scan`` pasted at side ``size`` and top-left (``x``, ``y``) shows, white on
    black: the image both controls (``background: black``, ``digit_colour: white``) give for the same draws.
    uint8 (S, S, 3)."""
    alpha = _placed_alpha(scan, size, x, y, spec)
    return np.clip(np.rint(alpha[..., None] * np.full(3, 255.0, dtype=np.float32)), 0, 255).astype(np.uint8)


def _composite(scan: np.ndarray, backgrounds: np.ndarray, rng: np.random.Generator,
               spec: DigitsBgConfig) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """One composite: returns (image uint8 (S, S, 3), mask bool (S, S), [hue, scale, x, y, background])."""
    size = int(rng.integers(spec.digit_min, spec.digit_max + 1))
    y = int(rng.integers(0, spec.image_size - size + 1))
    x = int(rng.integers(0, spec.image_size - size + 1))
    alpha = _placed_alpha(scan, size, x, y, spec)
    colour = rng.uniform(0, 255, size=3).astype(np.float32)
    if spec.digit_colour == "white":
        colour = np.full(3, 255.0, dtype=np.float32)
    b = int(rng.integers(len(backgrounds)))
    image = alpha[..., None] * colour + (1.0 - alpha[..., None]) * backgrounds[b]
    hue = colorsys.rgb_to_hsv(*(float(c) / 255.0 for c in colour))[0]
    factors = [hue, size, x, y, 0 if spec.background == "black" else b]
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), alpha > 0.5, factors


def load_scans() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 digit scans as float32 (n, 8, 8) in [0, 1], and their int64 labels."""
    digits = load_digits()
    return (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int64)


def build_digits_bg(seed: int, spec: DigitsBgConfig = DigitsBgConfig()) -> dict[str, ImageSplit]:
    """Build the train and test splits of digits-bg deterministically from ``seed``, with each
    composite's generative factors (columns as in :data:`FACTORS`)."""
    scans, labels = load_scans()
    photos = [np.asarray(p) for p in load_sample_images().images]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(scans))
    n_test = int(round(spec.test_fraction * len(scans)))
    scan_ids = {"test": np.sort(order[:n_test]), "train": np.sort(order[n_test:])}
    per_scan = {"train": spec.train_per_scan, "test": spec.test_per_scan}
    splits = {}
    for name in ("train", "test"):
        ids = np.repeat(scan_ids[name], per_scan[name])
        backgrounds = np.stack([_background(photos, rng, spec) for _ in range(spec.background_pool or len(ids))])
        if spec.background == "black":
            backgrounds = np.zeros_like(backgrounds)
        made = [_composite(scans[i], backgrounds, rng, spec) for i in ids]
        splits[name] = ImageSplit(
            images=np.stack([m[0] for m in made]),
            labels=labels[ids],
            masks=np.stack([m[1] for m in made]),
            source_ids=ids.astype(np.int64),
            factors=np.array([[labels[i], *m[2]] for i, m in zip(ids, made, strict=True)], dtype=np.float32),
        )
    return splits

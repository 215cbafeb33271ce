"""`synthetic-actions`: the embedded video dataset, rendered offline and encoded to real MP4.

Each clip shows one of the 1,797 real 8x8 handwritten digit scans of
``sklearn.datasets.load_digits`` as a coloured sprite (its contrast-stretched intensity is the
alpha, as in :mod:`selfsup.data.digits_bg`) over a random crop of one of the photographs of
``sklearn.datasets.load_sample_images``, and carries a sound. The class is an action: a motion of
the sprite together with a class-specific sound.

Motions (the sprite's state per frame is its centre, angle and side; one coordinate changes):

=================  ===================================  ==========================================
class              motion                               sound (base pitch, chirp, pulses per s)
=================  ===================================  ==========================================
translate_right    centre moves +x                      330 Hz, rising, 2
translate_left     centre moves -x                      440 Hz, falling, 3
translate_up       centre moves -y (up on screen)       587 Hz, rising, 4
translate_down     centre moves +y                      782 Hz, falling, 2
rotate_cw          angle turns clockwise on screen      1043 Hz, rising, 3
rotate_ccw         angle turns counter-clockwise        1391 Hz, falling, 4
zoom_in            side grows geometrically             1854 Hz, rising, 2
zoom_out           side shrinks geometrically           2472 Hz, falling, 3
=================  ===================================  ==========================================

The sound is a train of raised-cosine tone pulses whose pitch glides by a factor ``CHIRP`` up or
down within each pulse, plus white noise. Base pitches are 4/3 apart, more than the pitch jitter
(``PITCH_JITTER``) and the glide together span, so the pitch alone tells every class apart.

Nuisances, drawn per clip: the digit scan, the sprite colour, the background photo crop, the
sprite's position, angle and size, the speed of the motion (total travel, turn or zoom over the
clip), the pitch (within ``PITCH_JITTER``), pulse rate and phase, loudness and noise level.

No single frame tells the class: every clip draws its position uniformly on the frame (the frame
is a torus: a sprite leaving one side re-enters on the other), its angle uniformly over the
circle, and its side as the zoom classes' side at a random time of the clip, so a frame taken at
a random time has the same distribution of position, angle and side in every class. Only the
change between frames, and the sound, carry the class.

The split is by source scan: ``test_fraction`` of the scans (a seeded permutation) are held out
and only test clips use them, so no scan is in both splits. Every clip has its own generator
seeded by ``(seed, split, label, index)``, so the dataset is the same for a seed whatever the
number of worker threads.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from sklearn.datasets import load_digits, load_sample_images

from selfsup.config.video import SyntheticActionsConfig
from selfsup.data.media import encode_clip

CLASSES = ("translate_right", "translate_left", "translate_up", "translate_down",
           "rotate_cw", "rotate_ccw", "zoom_in", "zoom_out")
SPLITS = ("train", "test")


@dataclass(frozen=True)
class Sound:
    """A class's sound: ``pulse_rate`` tone pulses per second at ``pitch`` Hz, gliding up (+1) or
    down (-1) by ``CHIRP`` within each pulse."""

    pitch: float
    chirp: int
    pulse_rate: float


SOUNDS = {name: Sound(pitch=330.0 * (4.0 / 3.0) ** i, chirp=1 if i % 2 == 0 else -1, pulse_rate=(2, 3, 4)[i % 3])
          for i, name in enumerate(CLASSES)}
CHIRP = 1.1               # pitch glides from pitch / CHIRP to pitch * CHIRP (or back) within a pulse
PITCH_JITTER = 0.04       # base pitch drawn in pitch * [1 - PITCH_JITTER, 1 + PITCH_JITTER]
DUTY = 0.6                # share of each pulse period that sounds
STROKE_GAIN = 3.0         # contrast of the digit's alpha, as in digits-bg

SIDE_RANGE = (0.28, 0.45)     # sprite side at mid-clip, as a fraction of the frame (log-uniform)
TRAVEL_RANGE = (0.4, 0.7)     # translation over the clip, as a fraction of the frame
TURN_RANGE = (150.0, 270.0)   # rotation over the clip, degrees
ZOOM_RANGE = (0.7, 1.1)       # log of the zoom factor over the clip
BACKGROUND_ZOOM = (1.0, 4.0)  # photo crop side as a multiple of the frame side


def sample_motion(label: int, rng: np.random.Generator, frames: int, size: int) -> np.ndarray:
    """float64 (frames, 4) sprite states per frame: centre x, centre y (pixels, modulo ``size``),
    angle (degrees, counter-clockwise on screen) and side of the 8x8 digit box (pixels)."""
    name = CLASSES[label]
    tau = np.arange(frames) - (frames - 1) / 2.0  # time from mid-clip, in frames
    span = max(frames - 1, 1)
    x, y = rng.uniform(0, size, 2)
    angle = rng.uniform(0.0, 360.0)
    side_mid = size * np.exp(rng.uniform(*np.log(SIDE_RANGE)))
    zoom_rate = rng.uniform(*ZOOM_RANGE) / span
    states = np.empty((frames, 4))
    states[:] = (x, y, angle, side_mid)
    if name.startswith("zoom"):
        states[:, 3] = side_mid * np.exp((1 if name == "zoom_in" else -1) * zoom_rate * tau)
    else:  # the side a zoom clip has at a random time, so a single frame's side does not tell zoom apart
        states[:, 3] = side_mid * np.exp(rng.choice((-1, 1)) * zoom_rate * tau[rng.integers(frames)])
    if name.startswith("translate"):
        step = size * rng.uniform(*TRAVEL_RANGE) / span
        dx, dy = {"right": (1, 0), "left": (-1, 0), "up": (0, -1), "down": (0, 1)}[name.split("_")[1]]
        states[:, 0] = (x + dx * step * tau) % size
        states[:, 1] = (y + dy * step * tau) % size
    elif name.startswith("rotate"):
        turn = rng.uniform(*TURN_RANGE) / span
        states[:, 2] = (angle + (-1 if name == "rotate_cw" else 1) * turn * tau) % 360.0
    return states


def sprite_alpha(scan: np.ndarray, states: np.ndarray, size: int, stroke_gain: float = STROKE_GAIN) -> np.ndarray:
    """float32 (T, size, size) alpha of an 8x8 scan in [0, 1] placed at each state, on a torus.

    Each output pixel is mapped back through the inverse rotation and scale into the scan (one
    bilinear lookup); the torus offset to the centre is taken in ``[-size/2, size/2)``.
    """
    padded = np.pad(np.asarray(scan, dtype=np.float32), 1)  # zero border: strokes fade out at the box edge
    grid = np.arange(size, dtype=np.float64)
    out = np.empty((len(states), size, size), dtype=np.float32)
    for i, (cx, cy, angle, side) in enumerate(states):
        dx = (grid[None, :] - cx + size / 2.0) % size - size / 2.0
        dy = (grid[:, None] - cy + size / 2.0) % size - size / 2.0
        theta = np.deg2rad(angle)  # counter-clockwise on screen, where y points down
        cos, sin, scale = np.cos(theta), np.sin(theta), 8.0 / side
        u = (cos * dx - sin * dy) * scale + 4.5  # scan column; the digit box centre is at 4.5 in padded units
        v = (sin * dx + cos * dy) * scale + 4.5
        out[i] = cv2.remap(padded, u.astype(np.float32), v.astype(np.float32), cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    return np.clip(stroke_gain * (out - 0.5) + 0.5, 0.0, 1.0)


def background_crop(photos: list[np.ndarray], rng: np.random.Generator, size: int) -> np.ndarray:
    """float32 (size, size, 3): a random square crop of a random photo, resized to ``size``."""
    photo = photos[rng.integers(len(photos))]
    h, w, _ = photo.shape
    side = min(int(round(size * rng.uniform(*BACKGROUND_ZOOM))), h, w)
    y0, x0 = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    crop = np.ascontiguousarray(photo[y0:y0 + side, x0:x0 + side])
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)


def synthesize_sound(label: int, rng: np.random.Generator, n_samples: int, sample_rate: int) -> np.ndarray:
    """float32 (n_samples,) in [-1, 1]: the class's pulsed chirping tone with per-clip jitter and noise."""
    sound = SOUNDS[CLASSES[label]]
    t = np.arange(n_samples) / sample_rate
    pitch = sound.pitch * rng.uniform(1 - PITCH_JITTER, 1 + PITCH_JITTER)
    period = 1.0 / (sound.pulse_rate * rng.uniform(0.9, 1.1))
    cycle = ((t + rng.uniform(0, period)) % period) / period  # 0..1 within each pulse period
    within = np.clip(cycle / DUTY, 0.0, 1.0)                  # 0..1 within the sounding part
    freq = pitch * CHIRP ** (sound.chirp * (2.0 * within - 1.0))
    phase = 2.0 * np.pi * np.cumsum(freq) / sample_rate + rng.uniform(0, 2 * np.pi)
    envelope = np.where(cycle < DUTY, np.sin(np.pi * within) ** 2, 0.0)
    wave = rng.uniform(0.3, 0.6) * envelope * np.sin(phase) + rng.uniform(0.002, 0.02) * rng.standard_normal(n_samples)
    return np.clip(wave, -1.0, 1.0).astype(np.float32)


def render_frames(scan: np.ndarray, states: np.ndarray, colour: np.ndarray, background: np.ndarray) -> np.ndarray:
    """uint8 (T, S, S, 3): the scan as a sprite of ``colour`` (RGB 0-255) at each state over
    ``background`` (float (S, S, 3), 0-255)."""
    alpha = sprite_alpha(scan, states, background.shape[0])[..., None]
    return np.clip(np.rint(alpha * colour + (1.0 - alpha) * background), 0, 255).astype(np.uint8)


def render_clip(label: int, scan: np.ndarray, rng: np.random.Generator, spec: SyntheticActionsConfig,
                photos: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(frames uint8 (T, S, S, 3), audio float32 (n,)) of one clip of class ``label``."""
    background = background_crop(photos, rng, spec.size)
    colour = rng.uniform(0, 255, size=3).astype(np.float32)
    frames = render_frames(scan, sample_motion(label, rng, spec.frames, spec.size), colour, background)
    n_samples = int(round(spec.frames / spec.fps * spec.sample_rate))
    return frames, synthesize_sound(label, rng, n_samples, spec.sample_rate)


@dataclass(frozen=True)
class ClipPlan:
    """What one clip is made of: its split, name, class index, source scan and generator seed."""

    split: str
    name: str
    label: int
    scan: int
    seed: tuple[int, ...]

    @property
    def path(self) -> str:
        return f"clips/{self.split}/{self.name}.mp4"


def plan_clips(seed: int, spec: SyntheticActionsConfig, n_scans: int) -> list[ClipPlan]:
    """Every clip of both splits; the scans of the two splits are disjoint."""
    rng = np.random.default_rng([seed, 0])
    order = rng.permutation(n_scans)
    n_test_scans = int(round(spec.test_fraction * n_scans))
    pools = {"test": order[:n_test_scans], "train": order[n_test_scans:]}
    n_test = min(max(int(round(spec.clips_per_class * spec.test_fraction)), 1), spec.clips_per_class - 1)
    per_class = {"train": spec.clips_per_class - n_test, "test": n_test}
    plans = []
    for split_id, split in enumerate(SPLITS):
        n_clips = per_class[split] * len(CLASSES)
        pool = pools[split]
        scans = rng.choice(pool, size=n_clips, replace=n_clips > len(pool))
        for label, cls in enumerate(CLASSES):
            for k in range(per_class[split]):
                plans.append(ClipPlan(split=split, name=f"{cls}_{k:04d}", label=label,
                                      scan=int(scans[label * per_class[split] + k]),
                                      seed=(seed, split_id, label, k)))
    return plans


def write_synthetic_actions(seed: int, spec: SyntheticActionsConfig, out_dir: Path, workers: int | None = None,
                            progress: Callable[[int], None] | None = None) -> list[ClipPlan]:
    """Render and encode every clip to ``out_dir/clips/<split>/<name>.mp4``; returns the plans.

    ``workers`` threads (default: the CPU count) each render a clip and run one ffmpeg encoder;
    ``progress(n)`` is called as clips finish.
    """
    digits = load_digits()
    scans = (digits.images / 16.0).astype(np.float32)
    photos = [np.asarray(p) for p in load_sample_images().images]
    plans = plan_clips(seed, spec, len(scans))
    for split in SPLITS:
        (Path(out_dir) / "clips" / split).mkdir(parents=True, exist_ok=True)

    def make(plan: ClipPlan) -> None:
        frames, audio = render_clip(plan.label, scans[plan.scan], np.random.default_rng(list(plan.seed)), spec, photos)
        encode_clip(Path(out_dir) / plan.path, frames, audio, spec.fps, spec.sample_rate)
        if progress is not None:
            progress(1)

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        list(pool.map(make, plans))
    return plans

"""The extracted video features every video stage reads (written by :mod:`selfsup.prep.extract`).

One folder::

    meta.json               {"dataset", "classes", "frames", "size", "flow": {...}, "audio": {...},
                             "splits", "skipped": [...], "no_audio": [...]}
    frames_<split>.npy      uint8 (N, T, S, S, 3) RGB frames sampled evenly over each clip
    flow_<split>.npy        uint8 (N, T-1, S, S, 2) flow quantised to +-flow.bound (flow.storage
                            "uint8"), or float16 pixels per frame ("float16"); channels x, y
    logmel_<split>.npy      float32 (N, n_mels, n_steps) log-mel spectrograms
    labels_<split>.npy      int64 (N,)
    names_<split>.json      [name, ...] in the order of the arrays

for the splits ``train`` and ``test``. uint8 flow follows the two-stream practice of saving flow
as 8-bit images: clipped to ``+-bound`` pixels per frame, mapped linearly to 0..255 and rounded
(:func:`quantise_flow`), so the round-trip error is at most ``bound / 255``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from selfsup.errors import DataError

SPLITS = ("train", "test")
ARRAYS = ("frames", "flow", "logmel", "labels")


def quantise_flow(flow: np.ndarray, bound: float) -> np.ndarray:
    """uint8 flow: clipped to ``[-bound, bound]`` and mapped linearly onto 0..255 (rounded)."""
    scaled = (np.clip(flow, -bound, bound) + bound) * (255.0 / (2.0 * bound))
    return np.rint(scaled).astype(np.uint8)


def dequantise_flow(q: np.ndarray, bound: float) -> np.ndarray:
    """float32 pixels per frame from :func:`quantise_flow`'s uint8 codes."""
    return (np.asarray(q, dtype=np.float32) * np.float32(2.0 * bound / 255.0) - np.float32(bound)).astype(np.float32)


@dataclass
class VideoSplit:
    """One split of the extracted features; ``flow`` is float32 pixels per frame (dequantised)."""

    frames: np.ndarray
    flow: np.ndarray
    logmel: np.ndarray
    labels: np.ndarray
    names: list[str]

    def __post_init__(self) -> None:
        n = len(self.labels)
        sizes = {"frames": len(self.frames), "flow": len(self.flow), "logmel": len(self.logmel),
                 "names": len(self.names)}
        bad = {k: v for k, v in sizes.items() if v != n}
        if bad:
            raise DataError(f"video split arrays disagree in length: {n} labels but {bad}")


def feature_files(split: str) -> list[str]:
    return [f"{a}_{split}.npy" for a in ARRAYS] + [f"names_{split}.json"]


def load_video_features(folder: Path, mmap: bool = True) -> tuple[dict[str, VideoSplit], dict]:
    """(splits, meta) of an extracted-features folder; frames are memory-mapped unless ``mmap`` is False."""
    folder = Path(folder)
    missing = [name for name in ["meta.json"] + [f for s in SPLITS for f in feature_files(s)]
               if not (folder / name).is_file()]
    if missing:
        raise DataError(f"no complete video features at {folder} (missing {', '.join(missing)}); "
                        f"run `dvc repro extract`")
    try:
        meta = json.loads((folder / "meta.json").read_text())
        splits = {}
        for split in SPLITS:
            flow = np.load(folder / f"flow_{split}.npy")
            flow = (dequantise_flow(flow, meta["flow"]["bound"]) if flow.dtype == np.uint8
                    else flow.astype(np.float32))
            splits[split] = VideoSplit(
                frames=np.load(folder / f"frames_{split}.npy", mmap_mode="r" if mmap else None),
                flow=flow,
                logmel=np.load(folder / f"logmel_{split}.npy"),
                labels=np.load(folder / f"labels_{split}.npy"),
                names=json.loads((folder / f"names_{split}.json").read_text()),
            )
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise DataError(f"video features at {folder} are unreadable ({type(exc).__name__}: {exc}); "
                        f"rerun `dvc repro -f extract`") from exc
    return splits, meta

"""synthetic-actions: split by scan, determinism, real MP4s of the configured shape, and a class
that lives in the motion and the sound, not in any single frame."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits
from video_clips import dominant_frequency

from selfsup.config import Config
from selfsup.data.media import decode_audio, decode_frames
from selfsup.data.synthetic_actions import (
    CHIRP,
    CLASSES,
    PITCH_JITTER,
    SOUNDS,
    plan_clips,
    render_frames,
    sample_motion,
    synthesize_sound,
)
from selfsup.data.video import prepare_video
from selfsup.prep.flow import optical_flow
from selfsup.schema import build

TINY = {"clips_per_class": 4, "frames": 6, "size": 32, "fps": 6, "sample_rate": 16000}


def tiny_cfg(seed: int = 0, **spec: object) -> Config:
    return build(Config, {"seed": seed, "video": {"synthetic_actions": {**TINY, **spec}}})


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synthetic") / "video"
    prepare_video(tiny_cfg(), out, workers=2, progress=False)
    return out


def test_the_plan_splits_by_scan_with_the_configured_counts() -> None:
    spec = tiny_cfg(clips_per_class=8).video.synthetic_actions
    plans = plan_clips(0, spec, 1797)
    for split, per_class in (("train", 6), ("test", 2)):
        labels = [p.label for p in plans if p.split == split]
        assert np.bincount(labels).tolist() == [per_class] * len(CLASSES)
    scans = {s: {p.scan for p in plans if p.split == s} for s in ("train", "test")}
    assert not scans["train"] & scans["test"]
    assert plan_clips(0, spec, 1797) == plans and plan_clips(1, spec, 1797) != plans


def test_prepared_clips_decode_to_the_configured_shape_with_a_right_index(prepared: Path) -> None:
    meta = json.loads((prepared / "meta.json").read_text())
    assert meta["classes"] == list(CLASSES) and meta["splits"] == {"train": 24, "test": 8}
    assert (meta["fps"], meta["frames"], meta["size"], meta["sample_rate"]) == (6, 6, 32, 16000)
    index = json.loads((prepared / "index.json").read_text())
    train_scans = {e["scan"] for e in index["train"]}
    assert not train_scans & {e["scan"] for e in index["test"]}
    for split, entries in index.items():
        assert sorted(Path(p).name for p in (prepared / "clips" / split).iterdir()) == \
            sorted(f"{e['name']}.mp4" for e in entries)
        for e in entries:
            assert e["path"] == f"clips/{split}/{e['name']}.mp4" and e["name"].startswith(CLASSES[e["label"]])
    first = prepared / index["test"][0]["path"]
    assert decode_frames(first, None, 32).shape == (6, 32, 32, 3)
    assert abs(len(decode_audio(first, 16000)) - 16000) <= 160


def test_the_same_seed_gives_the_same_files_whatever_the_threads(prepared: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    prepare_video(tiny_cfg(), again, workers=1, progress=False)
    files = sorted(p.relative_to(prepared) for p in prepared.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert all((prepared / f).read_bytes() == (again / f).read_bytes() for f in files)
    other = tmp_path / "other"
    prepare_video(tiny_cfg(seed=1, clips_per_class=4), other, workers=2, progress=False)
    clip = "clips/test/zoom_in_0000.mp4"
    assert (other / clip).read_bytes() != (prepared / clip).read_bytes()


def test_the_sound_alone_tells_the_classes_apart(prepared: Path) -> None:
    sr = 16000
    ranges = []
    for label, name in enumerate(CLASSES):
        pitch = SOUNDS[name].pitch
        peaks = [dominant_frequency(synthesize_sound(label, np.random.default_rng(k), sr, sr), sr) for k in range(5)]
        assert all(pitch * (1 - PITCH_JITTER) / CHIRP <= f <= pitch * (1 + PITCH_JITTER) * CHIRP for f in peaks)
        ranges.append((min(peaks), max(peaks)))
    assert all(hi < lo for (_, hi), (lo, _) in zip(ranges[:-1], ranges[1:], strict=True))
    index = json.loads((prepared / "index.json").read_text())
    for entry in index["test"]:  # through AAC and back, too
        pitch = SOUNDS[CLASSES[entry["label"]]].pitch
        found = dominant_frequency(decode_audio(prepared / entry["path"], sr), sr)
        assert pitch * 0.85 <= found <= pitch * 1.16


def torus_offsets(size: int, cx: float, cy: float) -> tuple[np.ndarray, np.ndarray]:
    grid = np.arange(size)
    return (grid[None, :] - cx + size / 2) % size - size / 2, (grid[:, None] - cy + size / 2) % size - size / 2


def motion_statistics(label: int, seed: int, size: int = 64, frames: int = 16) -> np.ndarray:
    """Mean over frame pairs of (median flow x, median flow y, curl, divergence) of the moving pixels,
    curl and divergence taken about the sprite centre (on the torus); y points down."""
    rng = np.random.default_rng(seed)
    scan = (load_digits().images[seed] / 16.0).astype(np.float32)
    states = sample_motion(label, rng, frames, size)
    background = np.full((size, size, 3), 90.0, np.float32)
    flow = optical_flow(render_frames(scan, states, np.array([250.0, 230.0, 40.0]), background), "farneback")
    out = []
    for t, f in enumerate(flow):
        dx, dy = torus_offsets(size, *states[t, :2])
        fx, fy = f[..., 0], f[..., 1]
        moving = np.hypot(fx, fy) > 0.2
        out.append([np.median(fx[moving]), np.median(fy[moving]),
                    (dx * fy - dy * fx)[moving].mean(), (dx * fx + dy * fy)[moving].mean()])
    return np.mean(out, 0)


@pytest.mark.parametrize("seed", [0, 1])
def test_the_flow_shows_each_class_s_motion(seed: int) -> None:
    stats = {name: motion_statistics(label, seed) for label, name in enumerate(CLASSES)}
    assert stats["translate_right"][0] > 0.5 > abs(stats["translate_right"][1])
    assert stats["translate_left"][0] < -0.5 < -abs(stats["translate_left"][1])
    assert stats["translate_up"][1] < -0.5 < -abs(stats["translate_up"][0])
    assert stats["translate_down"][1] > 0.5 > abs(stats["translate_down"][0])
    assert stats["rotate_cw"][2] > 2 and stats["rotate_ccw"][2] < -2  # clockwise on screen: positive with y down
    assert stats["zoom_in"][3] > 2 and stats["zoom_out"][3] < -2


def test_a_single_frame_has_the_same_position_angle_and_size_in_every_class() -> None:
    size, frames, n = 64, 16, 600
    rng = np.random.default_rng(0)
    summaries = []
    for label in range(len(CLASSES)):
        picked = np.stack([sample_motion(label, rng, frames, size)[rng.integers(frames)] for _ in range(n)])
        angle = np.deg2rad(picked[:, 2])
        resultant = np.hypot(np.cos(angle).mean(), np.sin(angle).mean())
        summaries.append([picked[:, 0].mean(), picked[:, 1].mean(), resultant,
                          np.log(picked[:, 3]).mean(), np.log(picked[:, 3]).std()])
    summaries = np.array(summaries)
    np.testing.assert_allclose(summaries[:, :2], size / 2, atol=3.5)  # uniform on the frame: mean 32, se 0.75
    assert (summaries[:, 2] < 0.15).all()                              # uniform angle: no preferred direction
    np.testing.assert_allclose(summaries[:, 3], summaries[:, 3].mean(), atol=0.05)
    np.testing.assert_allclose(summaries[:, 4], summaries[:, 4].mean(), atol=0.04)

"""The extract stage end to end on clips written here: arrays and formats, known flow and pitch,
damaged clips skipped or fatal, and the stage scripts."""

from __future__ import annotations

import json
import logging
import re
import runpy
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from video_clips import SHIFT, drifting_texture, garbage, texture_clip, tone, truncate, zero_middle

from conftest import REPO, write_params
from selfsup.config import Config
from selfsup.data.media import decode_frames, encode_clip
from selfsup.data.video import load_video_index
from selfsup.data.video_store import load_video_features
from selfsup.errors import ConfigError, DataError
from selfsup.params import load_config
from selfsup.prep.audio import LOG_OFFSET, mel_centres
from selfsup.prep.extract import extract
from selfsup.schema import build

EXTRACT = {"frames": 8, "size": 32, "n_mels": 40, "n_fft": 512, "hop_length": 160, "sample_rate": 16000}


def extract_cfg(**extract_spec: object) -> Config:
    return build(Config, {"video": {"extract": {**EXTRACT, **extract_spec}}})


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared folder: 3 good train clips, a truncated and a garbage one, and 2 test clips (one silent)."""
    root = tmp_path_factory.mktemp("prepared") / "video"
    clips = root / "clips"
    texture_clip(clips / "right.mp4", freq=1000.0)
    encode_clip(clips / "left.mp4", drifting_texture(8, 32, dx=-SHIFT, seed=1), tone(2500.0, 1.0), fps=8)
    texture_clip(clips / "right2.mp4", freq=1000.0, seed=2)
    truncate(clips / "right2.mp4", clips / "cut.mp4")
    garbage(clips / "junk.mp4")
    texture_clip(clips / "silent.mp4", freq=None, seed=3)
    outside = texture_clip(root.parent / "elsewhere" / "far.mp4", freq=2500.0, seed=4)  # an absolute path

    def entry(name: str, label: int, path: str | None = None) -> dict:
        return {"name": name, "path": path or f"clips/{name}.mp4", "label": label}

    index = {"train": [entry("right", 0), entry("cut", 0), entry("left", 1), entry("junk", 1), entry("right2", 0)],
             "test": [entry("silent", 0), entry("far", 1, str(outside))]}
    meta = {"dataset": "synthetic-actions", "classes": ["right", "left"], "fps": 8, "sample_rate": 16000,
            "frames": 8, "size": 32}
    (root / "index.json").write_text(json.dumps(index))
    (root / "meta.json").write_text(json.dumps(meta))
    return root


@pytest.fixture(scope="module")
def features(video_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("features") / "features"
    return out, extract(extract_cfg(), video_dir, out, workers=2, progress=False)


def test_damaged_clips_are_skipped_by_name_and_reported(video_dir: Path, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="selfsup.prep.extract"):
        metrics = extract(extract_cfg(), video_dir, tmp_path / "f", workers=1, progress=False)
    assert (metrics["clips_train"], metrics["clips_test"], metrics["skipped"], metrics["no_audio"]) == (3, 2, 2, 1)
    for key in ("decode_frames_per_s", "flow_frames_per_s", "audio_clips_per_s", "seconds"):
        assert metrics[key] > 0
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "train clip cut" in warned and "train clip junk" in warned and "cut.mp4" in warned
    meta = json.loads((tmp_path / "f" / "meta.json").read_text())
    assert [(s["split"], s["name"]) for s in meta["skipped"]] == [("train", "cut"), ("train", "junk")]
    assert meta["skipped"][0]["path"] == str(video_dir / "clips" / "cut.mp4")
    assert "cut.mp4" in meta["skipped"][0]["error"] and "junk.mp4" in meta["skipped"][1]["error"]
    assert meta["no_audio"] == [{"split": "test", "name": "silent"}]


def test_the_arrays_have_the_documented_formats(features: tuple[Path, dict]) -> None:
    out, _ = features
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["meta.json"] + [f"{a}_{s}.{'json' if a == 'names' else 'npy'}"
                         for a in ("frames", "flow", "logmel", "labels", "names") for s in ("train", "test")])
    expected = {"frames": (np.uint8, (3, 8, 32, 32, 3)), "flow": (np.uint8, (3, 7, 32, 32, 2)),
                "logmel": (np.float32, (3, 40, 101)), "labels": (np.int64, (3,))}
    for name, (dtype, shape) in expected.items():
        array = np.load(out / f"{name}_train.npy")
        assert array.dtype == dtype and array.shape == shape, name
    assert np.load(out / "labels_train.npy").tolist() == [0, 1, 0]
    assert json.loads((out / "names_train.json").read_text()) == ["right", "left", "right2"]
    assert json.loads((out / "names_test.json").read_text()) == ["silent", "far"]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["flow"] == {"method": "farneback", "storage": "uint8", "bound": 20.0}
    assert meta["audio"]["seconds"] == 1.0 and meta["audio"]["n_steps"] == 101 and meta["audio"]["mel_scale"] == "htk"
    assert (meta["classes"], meta["frames"], meta["size"], meta["splits"]) == (["right", "left"], 8, 32,
                                                                                {"train": 3, "test": 2})


def test_loaded_features_hold_the_known_motion_and_pitch(features: tuple[Path, dict], video_dir: Path) -> None:
    out, _ = features
    splits, meta = load_video_features(out)
    train = splits["train"]
    np.testing.assert_array_equal(train.frames[0], decode_frames(video_dir / "clips" / "right.mp4", 8, 32))
    assert train.flow.dtype == np.float32 and train.flow.shape == (3, 7, 32, 32, 2)
    inner = train.flow[:, :, 8:-8, 8:-8]
    np.testing.assert_allclose(inner[0].mean((0, 1, 2)), [SHIFT, 0], atol=0.15)
    np.testing.assert_allclose(inner[1].mean((0, 1, 2)), [-SHIFT, 0], atol=0.15)
    centres = mel_centres(meta["audio"]["n_mels"], meta["audio"]["sample_rate"])
    for i, freq in ((0, 1000.0), (1, 2500.0)):
        band = train.logmel[i][:, 10:-10].mean(1).argmax()
        assert band == np.abs(centres - freq).argmin()
    silent = splits["test"].logmel[0]
    np.testing.assert_allclose(silent, np.log(LOG_OFFSET), atol=1e-5)
    assert splits["test"].names == ["silent", "far"] and splits["test"].labels.tolist() == [0, 1]


def test_float16_flow_storage_keeps_pixels_per_frame(video_dir: Path, tmp_path: Path) -> None:
    extract(extract_cfg(flow_storage="float16", flow="dis", frames=4, size=16), video_dir, tmp_path / "f",
            progress=False)
    assert np.load(tmp_path / "f" / "flow_train.npy").dtype == np.float16
    splits, meta = load_video_features(tmp_path / "f")
    assert meta["flow"]["storage"] == "float16" and splits["train"].flow.dtype == np.float32
    assert splits["train"].frames.shape == (3, 4, 16, 16, 3)
    # 4 of 8 frames (0, 2, 5, 7) at half size: the texture moves 1 px per source frame
    np.testing.assert_allclose(splits["train"].flow[0, :, 4:-4, 4:-4].mean((1, 2)), [[2, 0], [3, 0], [2, 0]],
                               atol=0.25)


def test_on_corrupt_fail_names_the_file_and_the_param(video_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"cut\.mp4.*video\.extract\.on_corrupt=skip"):
        extract(extract_cfg(on_corrupt="fail"), video_dir, tmp_path / "f", progress=False)
    assert not (tmp_path / "f").exists() and not (tmp_path / "f.tmp").exists()


@pytest.fixture(scope="module")
def zeroed_dir(video_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The healthy clips of ``video_dir`` plus a train clip whose middle third of bytes is zeroed (ffmpeg
    exits 0 on it, logging decoder errors)."""
    root = tmp_path_factory.mktemp("prepared_zeroed") / "video"
    root.mkdir()
    zero_middle(video_dir / "clips" / "right2.mp4", root / "zeroed.mp4")
    meta, index = load_video_index(video_dir)
    index["train"] = [e for e in index["train"] if e["name"] not in ("cut", "junk")]
    index["train"].insert(1, {"name": "zeroed", "path": "zeroed.mp4", "label": 1})
    (root / "index.json").write_text(json.dumps(index))
    (root / "meta.json").write_text(json.dumps(meta))
    return root


def test_a_clip_with_decoder_errors_is_skipped_with_the_error(zeroed_dir: Path, features: tuple[Path, dict],
                                                              tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="selfsup.prep.extract"):
        metrics = extract(extract_cfg(), zeroed_dir, tmp_path / "f", workers=2, progress=False)
    assert (metrics["clips_train"], metrics["clips_test"], metrics["skipped"]) == (3, 2, 1)
    assert "train clip zeroed" in " ".join(r.getMessage() for r in caplog.records)
    meta = json.loads((tmp_path / "f" / "meta.json").read_text())
    assert [(s["split"], s["name"], s["path"]) for s in meta["skipped"]] == [
        ("train", "zeroed", str(zeroed_dir / "zeroed.mp4"))]
    assert re.search(r"zeroed\.mp4: (Invalid|channel element|.*error)", meta["skipped"][0]["error"])
    # the healthy clips come out exactly as from the folder without the damaged clip
    out, _ = features
    for name in ("frames", "flow", "logmel", "labels", "names"):
        for split in ("train", "test"):
            if name == "names":
                assert (tmp_path / "f" / f"names_{split}.json").read_text() == (out / f"names_{split}.json").read_text()
            else:
                np.testing.assert_array_equal(np.load(tmp_path / "f" / f"{name}_{split}.npy"),
                                              np.load(out / f"{name}_{split}.npy"), err_msg=f"{name}_{split}")


def test_on_corrupt_fail_stops_at_a_clip_with_decoder_errors(zeroed_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"clip zeroed .*zeroed\.mp4: .*(Invalid|channel element|error).*"
                                        r"on_corrupt=skip") as info:
        extract(extract_cfg(on_corrupt="fail"), zeroed_dir, tmp_path / "f", workers=2, progress=False)
    assert "re-encode" in str(info.value).lower()
    assert not (tmp_path / "f").exists() and not (tmp_path / "f.tmp").exists()


def test_tvl1_without_contrib_fails_before_decoding(video_dir: Path, tmp_path: Path) -> None:
    if hasattr(cv2, "optflow"):
        pytest.skip("this OpenCV has the contrib modules")
    with pytest.raises(ConfigError, match="opencv-contrib-python"):
        extract(extract_cfg(flow="tvl1"), video_dir, tmp_path / "f", progress=False)
    assert not (tmp_path / "f").exists()


def test_missing_or_incomplete_features_name_the_stage(features: tuple[Path, dict], tmp_path: Path) -> None:
    with pytest.raises(DataError, match="run `dvc repro extract`"):
        load_video_features(tmp_path / "nothing")
    partial = tmp_path / "partial"
    partial.mkdir()
    for f in features[0].iterdir():
        if f.name != "logmel_test.npy":
            (partial / f.name).write_bytes(f.read_bytes())
    with pytest.raises(DataError, match=r"missing logmel_test\.npy.*dvc repro extract"):
        load_video_features(partial)
    with pytest.raises(DataError, match="run `dvc repro prepare_video`"):
        extract(extract_cfg(), tmp_path / "no_video", tmp_path / "f", progress=False)


def run_script(script: str, argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(sys, "argv", [script, *argv])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(REPO / "stages" / script), run_name="__main__")
    return exit_info.value.code


def test_the_stage_scripts_prepare_and_extract(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_params(project, video={"synthetic_actions": {"clips_per_class": 4, "frames": 4, "size": 16, "fps": 4},
                                 "extract": {"frames": 4, "size": 16}})
    monkeypatch.chdir(project)
    assert load_config(project / "params.yaml").video.synthetic_actions.clips_per_class == 4
    assert run_script("prepare_video.py", ["--out", "data/video"], monkeypatch) == 0
    assert json.loads((project / "data/video/meta.json").read_text())["splits"] == {"train": 24, "test": 8}
    argv = ["--video", "data/video", "--out", "data/video_features", "--metrics", "results/extract/metrics.json"]
    assert run_script("extract.py", argv, monkeypatch) == 0
    metrics = json.loads((project / "results/extract/metrics.json").read_text())
    assert (metrics["clips_train"], metrics["clips_test"], metrics["skipped"]) == (24, 8, 0)
    splits, _ = load_video_features(project / "data/video_features")
    assert splits["train"].frames.shape == (24, 4, 16, 16, 3)

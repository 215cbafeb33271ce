"""Class-per-folder video trees, indexed in place: classes, splits, paths, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from video_clips import texture_clip

from selfsup.config import Config
from selfsup.data.video import index_videofolder, prepare_video
from selfsup.errors import DataError
from selfsup.schema import build


def folder_cfg(path: Path | None, seed: int = 0, test_fraction: float = 0.2) -> Config:
    return build(Config, {"seed": seed, "video": {"dataset": "videofolder", "videofolder": {
        "path": None if path is None else str(path), "test_fraction": test_fraction}}})


def write_tree(root: Path, layout: dict[str, int]) -> None:
    """``layout``: class folder (may be nested like ``train/walk``) -> number of tiny clips."""
    for folder, n in layout.items():
        for i in range(n):
            texture_clip(root / folder / f"clip{i}.mp4", n_frames=3, size=16, freq=None, seed=i)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("videos") / "ucf"
    write_tree(root, {"walk": 3, "jump": 3})
    (root / "walk" / "notes.txt").write_text("not a video")
    (root / "jump" / ".hidden.mp4").write_bytes(b"")
    (root / "jump" / "CLIP.MP4").write_bytes((root / "jump" / "clip0.mp4").read_bytes())
    return root


def test_one_tree_is_split_per_class_by_the_seed_and_indexed_in_place(tree: Path, tmp_path: Path) -> None:
    meta = prepare_video(folder_cfg(tree), tmp_path / "video", progress=False)
    assert meta["classes"] == ["jump", "walk"] and meta["splits"] == {"train": 5, "test": 2}
    assert meta["fps"] is None and meta["frames"] is None
    assert sorted(p.name for p in (tmp_path / "video").iterdir()) == ["index.json", "meta.json"]  # nothing copied
    index = json.loads((tmp_path / "video" / "index.json").read_text())
    entries = index["train"] + index["test"]
    assert sorted(e["name"] for e in entries) == ["jump/CLIP.MP4", "jump/clip0.mp4", "jump/clip1.mp4",
                                                  "jump/clip2.mp4", "walk/clip0.mp4", "walk/clip1.mp4",
                                                  "walk/clip2.mp4"]
    for e in entries:
        assert Path(e["path"]).is_absolute() and Path(e["path"]).is_file()
        assert e["label"] == ["jump", "walk"].index(e["name"].split("/")[0])
    assert sorted(e["label"] for e in index["test"]) == [0, 1]  # round(0.2 x 3 or 4) = 1 test clip per class
    assert index_videofolder(folder_cfg(tree).video.videofolder, 0)[1] == index
    splits = {seed: index_videofolder(folder_cfg(tree).video.videofolder, seed)[1]["test"] for seed in range(6)}
    assert len({json.dumps(s) for s in splits.values()}) > 1  # the seed picks the held-out clips


def test_a_train_test_pair_is_kept_as_given(tmp_path: Path) -> None:
    write_tree(tmp_path / "pair", {"train/a": 2, "train/b": 1, "test/a": 1, "test/b": 1})
    classes, index = index_videofolder(folder_cfg(tmp_path / "pair").video.videofolder, 0)
    assert classes == ["a", "b"]
    assert [(e["name"], e["label"]) for e in index["train"]] == [("a/clip0.mp4", 0), ("a/clip1.mp4", 0),
                                                                ("b/clip0.mp4", 1)]
    assert [e["name"] for e in index["test"]] == ["a/clip0.mp4", "b/clip0.mp4"]
    assert index["test"][0]["path"] == str((tmp_path / "pair" / "test" / "a" / "clip0.mp4").resolve())


def test_missing_or_empty_folders_name_the_param_and_the_layout(tmp_path: Path) -> None:
    layout = r"<path>/<class>/<clip>\.<ext>"
    for path in (None, tmp_path / "absent"):
        with pytest.raises(DataError, match=rf"video\.videofolder\.path.*{layout}"):
            prepare_video(folder_cfg(path), tmp_path / "out", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=rf"video\.videofolder\.path.*no class folders.*{layout}"):
        prepare_video(folder_cfg(tmp_path / "empty"), tmp_path / "out", progress=False)
    (tmp_path / "empty" / "walk").mkdir()
    with pytest.raises(DataError, match="walk holds no video files"):
        prepare_video(folder_cfg(tmp_path / "empty"), tmp_path / "out", progress=False)
    write_tree(tmp_path / "half", {"train/a": 1})
    with pytest.raises(DataError, match="has a train/ folder but no test/ folder"):
        prepare_video(folder_cfg(tmp_path / "half"), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()

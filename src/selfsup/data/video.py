"""The ``prepare_video`` stage's library function: the prepared video layout.

A prepared video dataset is one folder::

    meta.json     {"dataset", "classes", "fps", "sample_rate", "frames", "size", "splits", "seed"}
    index.json    {"train": [{"name", "path", "label"}, ...], "test": [...]}
    clips/<split>/<name>.mp4      synthetic-actions only: the encoded clips

``path`` is relative to the folder for clips stored in it (synthetic-actions; their entries
also carry ``scan``, the source digit scan) and absolute for a video folder, whose files are
indexed in place, not copied. ``fps``, ``sample_rate``, ``frames`` and ``size`` describe the
encoded clips of synthetic-actions; a video folder's files vary, so they are ``null`` there.

Video folders (``video.dataset: videofolder``) are laid out ``<path>/<class>/<clip>.<ext>``
(one tree, split per class by a fixed shuffle seeded by ``seed`` and the class name, with
``video.videofolder.test_fraction`` held out) or ``<path>/train/<class>/...`` and
``<path>/test/<class>/...``. Classes are the sorted folder names; files with a video extension
(:data:`~selfsup.data.media.VIDEO_EXTENSIONS`, any case) below a class folder are its clips.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
from tqdm import tqdm

from selfsup.config import Config
from selfsup.config.video import VideoFolderConfig
from selfsup.data import synthetic_actions
from selfsup.data.media import VIDEO_EXTENSIONS
from selfsup.errors import DataError
from selfsup.io import replace_folder

SPLITS = ("train", "test")
LAYOUT = "<path>/<class>/<clip>.<ext>, or <path>/train/<class>/<clip>.<ext> and <path>/test/<class>/<clip>.<ext>"


def _class_clips(tree: Path) -> dict[str, list[Path]]:
    """Class name -> sorted video files (hidden files and folders ignored) of a class-per-folder tree."""
    dirs = sorted(d for d in tree.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not dirs:
        raise DataError(f"video.videofolder.path: {tree} has no class folders; expected {LAYOUT}")
    out = {}
    for d in dirs:
        files = sorted(p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
                       and not any(part.startswith(".") for part in p.relative_to(d).parts))
        if not files:
            raise DataError(f"class folder {d} holds no video files ({', '.join(VIDEO_EXTENSIONS)}); "
                            f"add clips or remove the folder")
        out[d.name] = files
    return out


def _entry(path: Path, tree: Path, label: int) -> dict:
    return {"name": path.relative_to(tree).as_posix(), "path": str(path.resolve()), "label": label}


def index_videofolder(fcfg: VideoFolderConfig, seed: int) -> tuple[list[str], dict[str, list[dict]]]:
    """(classes, index) of a class-per-folder video tree; files stay where they are."""
    if fcfg.path is None:
        raise DataError(f"video.dataset=videofolder needs video.videofolder.path: a folder laid out {LAYOUT}. "
                        f"Set it in params.yaml")
    top = Path(fcfg.path)
    if not top.is_dir():
        raise DataError(f"video.videofolder.path={fcfg.path!r}: {top.absolute()} does not exist or is not a folder; "
                        f"expected {LAYOUT}")
    has_train, has_test = (top / "train").is_dir(), (top / "test").is_dir()
    if has_train != has_test:
        raise DataError(f"video.videofolder.path: {top} has a {'train' if has_train else 'test'}/ folder but no "
                        f"{'test' if has_train else 'train'}/ folder; expected {LAYOUT}")
    if has_train:
        trees = {s: _class_clips(top / s) for s in SPLITS}
        if sorted(trees["train"]) != sorted(trees["test"]):
            raise DataError(f"class folders differ between {top / 'train'} and {top / 'test'}: "
                            f"only in train: {sorted(set(trees['train']) - set(trees['test']))}, "
                            f"only in test: {sorted(set(trees['test']) - set(trees['train']))}")
        classes = sorted(trees["train"])
        index = {s: [_entry(p, top / s, i) for i, c in enumerate(classes) for p in trees[s][c]] for s in SPLITS}
        return classes, index
    tree = _class_clips(top)
    classes = sorted(tree)
    index: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for label, c in enumerate(classes):
        files = tree[c]
        n_test = min(max(int(round(len(files) * fcfg.test_fraction)), 1), len(files) - 1) if len(files) > 1 else 0
        is_test = np.zeros(len(files), dtype=bool)
        is_test[np.random.default_rng([seed, zlib.crc32(c.encode())]).permutation(len(files))[:n_test]] = True
        for p, t in zip(files, is_test, strict=True):
            index["test" if t else "train"].append(_entry(p, top, label))
    return classes, index


def _write_index(folder: Path, meta: dict, index: dict[str, list[dict]]) -> None:
    meta["splits"] = {s: len(index[s]) for s in SPLITS}
    (folder / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


def prepare_video(cfg: Config, out_dir: Path, workers: int | None = None, progress: bool = True) -> dict:
    """Write the prepared layout of ``cfg.video.dataset`` to ``out_dir``; returns its meta.

    ``workers`` is the number of threads encoding synthetic-actions clips (default: the CPU count).
    """
    vcfg = cfg.video
    if vcfg.dataset == "videofolder":
        classes, index = index_videofolder(vcfg.videofolder, cfg.seed)
        meta = {"dataset": vcfg.dataset, "classes": classes, "fps": None, "sample_rate": None, "frames": None,
                "size": None, "seed": cfg.seed}

        def fill(tmp: Path) -> None:
            _write_index(tmp, meta, index)
    else:
        spec = vcfg.synthetic_actions
        meta = {"dataset": vcfg.dataset, "classes": list(synthetic_actions.CLASSES), "fps": spec.fps,
                "sample_rate": spec.sample_rate, "frames": spec.frames, "size": spec.size, "seed": cfg.seed}

        def fill(tmp: Path) -> None:
            total = spec.clips_per_class * len(synthetic_actions.CLASSES)
            with tqdm(total=total, desc="synthetic-actions", unit="clip", disable=not progress) as bar:
                plans = synthetic_actions.write_synthetic_actions(cfg.seed, spec, tmp, workers, bar.update)
            _write_index(tmp, meta, {s: [{"name": p.name, "path": p.path, "label": p.label, "scan": p.scan}
                                         for p in plans if p.split == s] for s in SPLITS})

    replace_folder(Path(out_dir), fill)
    return meta


def load_video_index(video_dir: Path) -> tuple[dict, dict[str, list[dict]]]:
    """(meta, index) of a prepared video folder, with each entry's ``path`` made absolute."""
    video_dir = Path(video_dir)
    try:
        meta = json.loads((video_dir / "meta.json").read_text())
        index = json.loads((video_dir / "index.json").read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"no prepared video dataset at {video_dir} ({exc}); run `dvc repro prepare_video`") from exc
    for split in SPLITS:
        if split not in index:
            raise DataError(f"{video_dir / 'index.json'} has no {split!r} split; rerun `dvc repro -f prepare_video`")
        for entry in index[split]:
            entry["path"] = str(video_dir / entry["path"]) if not Path(entry["path"]).is_absolute() else entry["path"]
    return meta, index

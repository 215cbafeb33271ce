"""Real image datasets: CIFAR-10, CIFAR-100, STL-10 (via torchvision) and a user's image folder.

:func:`load` returns ``(classes, splits)`` for ``cfg.dataset``, with splits as
:class:`~selfsup.data.store.ImageSplit` (uint8 ``(N, H, W, 3)`` images, int64 labels, -1 for
unlabeled). Torchvision datasets live under ``<data.root>/<dataset>`` and are downloaded there
when ``data.download`` is true; without internet access the error names the folder to fill and
the archive to fetch.

Torchvision checks the md5 of every extracted file against the official release before reading
it. Here files are only required to exist (the downloaded archive itself is still md5-checked by
torchvision) and are then checked for shape and label range, so a damaged file is still reported
as a :class:`DataError`, and small files in the same format (tests, subsets) load too.
"""

from __future__ import annotations

import http.client
import logging
import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

from selfsup.config import Config
from selfsup.config.image import ImageFolderConfig
from selfsup.data.store import ImageSplit
from selfsup.errors import ConfigError, DataError

log = logging.getLogger(__name__)

_DOWNLOAD_ERRORS = (OSError, RuntimeError, ValueError, EOFError, tarfile.TarError, http.client.HTTPException)
_READ_ERRORS = (OSError, RuntimeError, ValueError, EOFError, KeyError, TypeError, AttributeError, IndexError,
                pickle.UnpicklingError)


def load(cfg: Config) -> tuple[list[str], dict[str, ImageSplit]]:
    """(class names, splits) of the real dataset named by ``cfg.dataset``."""
    if cfg.dataset in ("cifar10", "cifar100", "stl10"):
        return _load_torchvision(cfg.dataset, Path(cfg.data.root) / cfg.dataset, cfg.data.download)
    if cfg.dataset == "imagefolder":
        return load_imagefolder(cfg.data.imagefolder, cfg.seed)
    raise ConfigError(f"dataset={cfg.dataset!r} is not a real dataset; allowed: cifar10, cifar100, stl10, imagefolder")


# --- torchvision datasets ---------------------------------------------------------------------


def _relaxed(cls: type) -> type:
    """``cls`` with its per-file md5 checks turned into existence checks."""
    attrs: dict = {
        "train_list": [[name, None] for name, _ in cls.train_list],
        "test_list": [[name, None] for name, _ in cls.test_list],
    }
    if isinstance(getattr(cls, "meta", None), dict):
        attrs["meta"] = {**cls.meta, "md5": None}
    return type(f"Relaxed{cls.__name__}", (cls,), attrs)


def _required_files(cls: type) -> list[str]:
    names = [name for name, _ in cls.train_list + cls.test_list]
    if isinstance(getattr(cls, "meta", None), dict):
        names.append(cls.meta["filename"])
    if getattr(cls, "class_names_file", None):
        names.append(cls.class_names_file)
    return names


def _load_torchvision(name: str, root: Path, download: bool) -> tuple[list[str], dict[str, ImageSplit]]:
    from torchvision import datasets

    base = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100, "stl10": datasets.STL10}[name]
    cls = _relaxed(base)
    root = root.absolute()
    folder = root / base.base_folder
    required = _required_files(base)

    def missing() -> list[str]:
        return [f for f in required if not (folder / f).is_file()]

    how = (f"Download {base.url} and extract it into {root}, so that the folder {folder} holds "
           f"{', '.join(required)}")
    if missing() and not download:
        raise DataError(f"{name} not found: {folder} is missing {', '.join(missing())}. {how}; "
                        f"or set data.download=true to download it automatically")
    if missing():
        try:
            _download(base, root)
        except _DOWNLOAD_ERRORS as exc:
            raise DataError(f"could not download {name} into {root} ({type(exc).__name__}: {exc}). "
                            f"Without internet access: {how}") from exc
        if missing():
            raise DataError(f"{name}: the downloaded archive did not provide {', '.join(missing())}. {how}")

    if name == "stl10":
        split_args: dict[str, dict] = {s: {"split": s} for s in ("train", "test", "unlabeled")}
    else:
        split_args = {"train": {"train": True}, "test": {"train": False}}
    splits: dict[str, ImageSplit] = {}
    classes: list[str] = []
    for split, kwargs in split_args.items():
        try:
            ds = cls(root, download=False, **kwargs)
            if name == "stl10":
                images = np.ascontiguousarray(ds.data.transpose(0, 2, 3, 1))  # (N, 3, H, W) -> (N, H, W, 3)
                labels = np.asarray(ds.labels, dtype=np.int64)
            else:
                images = np.ascontiguousarray(ds.data, dtype=np.uint8)
                labels = np.asarray(ds.targets, dtype=np.int64)
            classes = [str(c) for c in ds.classes]
            del ds
            if split == "unlabeled":
                labels = np.full(len(images), -1, dtype=np.int64)
            elif len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
                raise ValueError(f"labels outside 0..{len(classes) - 1}")
            splits[split] = ImageSplit(images=images, labels=labels)
        except (*_READ_ERRORS, DataError) as exc:
            raise DataError(f"{name} {split} split in {folder} is unreadable ({type(exc).__name__}: {exc}); "
                            f"delete {folder} and download it again ({base.url})") from exc
    return classes, splits


def _download(base: type, root: Path) -> None:
    """Fetch the dataset's official archive, check its md5 and extract it into ``root``."""
    from torchvision.datasets import utils

    utils.download_and_extract_archive(base.url, str(root), filename=base.filename, md5=base.tgz_md5)


# --- image folders ----------------------------------------------------------------------------


def _class_files(tree: Path) -> dict[str, list[Path]]:
    """Class name -> sorted image files (hidden files ignored) of a class-per-folder tree."""
    if not tree.is_dir():
        raise DataError(f"image folder {tree} does not exist or is not a folder")
    dirs = sorted(d for d in tree.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not dirs:
        raise DataError(f"image folder {tree} has no class subfolders; expected {tree}/<class name>/<image files>")
    out = {}
    for d in dirs:
        files = sorted(p for p in d.rglob("*")
                       if p.is_file() and not any(part.startswith(".") for part in p.relative_to(d).parts))
        if not files:
            raise DataError(f"class folder {d} holds no images; add images or remove the folder")
        out[d.name] = files
    return out


def _read_image(path: Path, size: int) -> np.ndarray:
    """RGB uint8 (size, size, 3): shorter side resized to ``size``, then center-cropped."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
        return np.asarray(ImageOps.fit(im, (size, size), method=Image.Resampling.BICUBIC), dtype=np.uint8)


def _read_split(items: list[tuple[Path, int]], fcfg: ImageFolderConfig, where: str) -> ImageSplit:
    images = np.empty((len(items), fcfg.image_size, fcfg.image_size, 3), dtype=np.uint8)
    labels = np.empty(len(items), dtype=np.int64)
    n = 0
    for path, label in tqdm(items, desc=f"reading {where}", unit="img"):
        try:
            images[n] = _read_image(path, fcfg.image_size)
        except Exception as exc:  # PIL raises many types for bad files; the type and message are reported
            if fcfg.on_corrupt == "fail":
                raise DataError(f"cannot decode {path} as an image ({type(exc).__name__}: {exc}); delete the "
                                f"file or set data.imagefolder.on_corrupt=skip to skip unreadable files") from exc
            log.warning("skipping %s: cannot decode it as an image (%s: %s)", path, type(exc).__name__, exc)
            continue
        labels[n] = label
        n += 1
    if n == 0:
        raise DataError(f"no readable images in {where}")
    return ImageSplit(images=images[:n].copy() if n < len(items) else images, labels=labels[:n])


def load_imagefolder(fcfg: ImageFolderConfig, seed: int) -> tuple[list[str], dict[str, ImageSplit]]:
    """Read a class-per-folder tree: ``train/`` and ``test/`` trees, or one tree split by ``test_fraction``.

    A single tree is split per class by a fixed shuffle of its sorted file list (seeded by ``seed``
    and the class name), so the split is reproducible and does not depend on unreadable files.
    """
    if fcfg.path is None:
        raise ConfigError("dataset=imagefolder needs data.imagefolder.path: the folder holding one subfolder "
                          "of images per class (or train/ and test/ trees of them). Set it in params.yaml")
    top = Path(fcfg.path)
    if not top.is_dir():
        raise DataError(f"data.imagefolder.path={fcfg.path!r}: {top.absolute()} does not exist or is not a folder")
    has_train, has_test = (top / "train").is_dir(), (top / "test").is_dir()
    if has_train != has_test:
        raise DataError(f"{top} has a {'train' if has_train else 'test'}/ folder but no "
                        f"{'test' if has_train else 'train'}/ folder; give both, or one class-per-folder tree")
    if has_train:
        trees = {"train": _class_files(top / "train"), "test": _class_files(top / "test")}
        if sorted(trees["train"]) != sorted(trees["test"]):
            only_train = sorted(set(trees["train"]) - set(trees["test"]))
            only_test = sorted(set(trees["test"]) - set(trees["train"]))
            raise DataError(f"class folders differ between {top / 'train'} and {top / 'test'}: "
                            f"only in train: {only_train}, only in test: {only_test}")
        classes = sorted(trees["train"])
        items = {s: [(p, i) for i, c in enumerate(classes) for p in tree[c]] for s, tree in trees.items()}
        wheres = {s: str(top / s) for s in trees}
    else:
        tree = _class_files(top)
        classes = sorted(tree)
        items = {"train": [], "test": []}
        for label, c in enumerate(classes):
            files = tree[c]
            n_test = min(max(int(round(len(files) * fcfg.test_fraction)), 1), len(files) - 1)
            rng = np.random.default_rng([seed, zlib.crc32(c.encode())])
            is_test = np.zeros(len(files), dtype=bool)
            is_test[rng.permutation(len(files))[:n_test]] = True
            for p, t in zip(files, is_test, strict=True):
                items["test" if t else "train"].append((p, label))
        wheres = {s: f"{top} ({s} part)" for s in items}
    return classes, {s: _read_split(items[s], fcfg, wheres[s]) for s in ("train", "test")}

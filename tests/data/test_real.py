"""Real-dataset loaders on tiny files written in each dataset's on-disk format (no network)."""

from __future__ import annotations

import io
import logging
import pickle
import re
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from selfsup.config import Config
from selfsup.data import real
from selfsup.errors import ConfigError, DataError
from selfsup.schema import build


def make_cfg(dataset: str, root: Path | None = None, download: bool = False, seed: int = 0, **folder) -> Config:
    data: dict = {"download": download}
    if root is not None:
        data["root"] = str(root)
    if folder:
        data["imagefolder"] = folder
    return build(Config, {"dataset": dataset, "seed": seed, "data": data})


class _Py2Pickler(pickle._Pickler):
    """Writes ``bytes`` as Python 2 ``str`` (BINSTRING), like the official CIFAR pickles made with Python 2.

    Torchvision reads those with ``encoding="latin1"``, so b"data" comes back as the str key "data".
    """

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str


def _pickle(path: Path, obj: dict) -> None:
    buffer = io.BytesIO()
    _Py2Pickler(buffer, protocol=2).dump(obj)
    path.write_bytes(buffer.getvalue())


def _rand_images(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def _cifar_rows(images: np.ndarray) -> np.ndarray:
    """(N, 32, 32, 3) -> CIFAR's (N, 3072) rows: all red, then green, then blue, each row-major."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), -1)


# --- CIFAR ------------------------------------------------------------------------------------


def write_cifar10(root: Path, rng: np.random.Generator) -> tuple[np.ndarray, list[int], np.ndarray, list[int]]:
    folder = root / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_images, train_labels = [], []
    for b in range(1, 6):
        imgs = _rand_images(rng, 2, 32)
        labels = [int(x) for x in rng.integers(0, 10, size=2)]
        _pickle(folder / f"data_batch_{b}", {b"batch_label": b"x", b"data": _cifar_rows(imgs), b"labels": labels})
        train_images.append(imgs)
        train_labels += labels
    test_images = _rand_images(rng, 3, 32)
    test_labels = [9, 0, 4]
    _pickle(folder / "test_batch", {b"data": _cifar_rows(test_images), b"labels": test_labels})
    names = [f"class{i}".encode() for i in range(10)]
    _pickle(folder / "batches.meta", {b"label_names": names, b"num_vis": 3072})
    return np.concatenate(train_images), train_labels, test_images, test_labels


def test_cifar10_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    train_images, train_labels, test_images, test_labels = write_cifar10(tmp_path, rng)
    classes, splits = real.load(make_cfg("cifar10", tmp_path))
    assert classes == [f"class{i}" for i in range(10)]
    assert sorted(splits) == ["test", "train"]
    train, test = splits["train"], splits["test"]
    assert train.images.shape == (10, 32, 32, 3) and train.images.dtype == np.uint8
    assert test.images.shape == (3, 32, 32, 3)
    assert train.labels.dtype == np.int64
    np.testing.assert_array_equal(train.images, train_images)
    np.testing.assert_array_equal(test.images, test_images)
    assert train.labels.tolist() == train_labels
    assert test.labels.tolist() == test_labels
    assert test.images[1, 5, 7].tolist() == test_images[1, 5, 7].tolist()


def test_cifar10_present_files_are_not_downloaded_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_cifar10(tmp_path, np.random.default_rng(1))

    def no_network(*args, **kwargs):
        raise AssertionError("download attempted although the files are present")

    monkeypatch.setattr(real, "_download", no_network)
    classes, splits = real.load(make_cfg("cifar10", tmp_path, download=True))
    assert len(splits["train"].images) == 10


def test_cifar100_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    folder = tmp_path / "cifar100" / "cifar-100-python"
    folder.mkdir(parents=True)
    train_images, test_images = _rand_images(rng, 4, 32), _rand_images(rng, 2, 32)
    _pickle(folder / "train", {b"data": _cifar_rows(train_images), b"fine_labels": [99, 0, 50, 1],
                               b"coarse_labels": [19, 0, 3, 1]})
    _pickle(folder / "test", {b"data": _cifar_rows(test_images), b"fine_labels": [7, 8], b"coarse_labels": [0, 0]})
    _pickle(folder / "meta", {b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                              b"coarse_label_names": [f"c{i}".encode() for i in range(20)]})
    classes, splits = real.load(make_cfg("cifar100", tmp_path))
    assert len(classes) == 100 and classes[99] == "f99"
    np.testing.assert_array_equal(splits["train"].images, train_images)
    np.testing.assert_array_equal(splits["test"].images, test_images)
    assert splits["train"].labels.tolist() == [99, 0, 50, 1]
    assert splits["test"].labels.tolist() == [7, 8]


@pytest.mark.parametrize(("dataset", "base", "url"), [
    ("cifar10", "cifar-10-batches-py", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
    ("cifar100", "cifar-100-python", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"),
    ("stl10", "stl10_binary", "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz"),
])
def test_missing_dataset_names_folder_and_url(tmp_path: Path, dataset: str, base: str, url: str) -> None:
    with pytest.raises(DataError) as info:
        real.load(make_cfg(dataset, tmp_path / "raw"))
    message = str(info.value)
    assert str(tmp_path / "raw" / dataset / base) in message
    assert url in message
    assert "data.download=true" in message


def test_failed_download_is_a_clear_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets.utils as tv_utils

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tv_utils, "download_url", offline)
    with pytest.raises(DataError) as info:
        real.load(make_cfg("cifar10", tmp_path, download=True))
    message = str(info.value)
    assert "could not download" in message and "name resolution" in message
    assert str(tmp_path / "cifar10" / "cifar-10-batches-py") in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in message


def test_truncated_cifar_batch_is_a_data_error(tmp_path: Path) -> None:
    write_cifar10(tmp_path, np.random.default_rng(3))
    batch = tmp_path / "cifar10" / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:100])
    with pytest.raises(DataError, match="unreadable"):
        real.load(make_cfg("cifar10", tmp_path))


# --- STL-10 -----------------------------------------------------------------------------------


def _stl_bytes(images: np.ndarray) -> bytes:
    """(N, 96, 96, 3) -> STL-10's binary layout: per image and channel, column-major (N, 3, W, H)."""
    return np.ascontiguousarray(images.transpose(0, 3, 2, 1)).tobytes()


def test_stl10_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    folder = tmp_path / "stl10" / "stl10_binary"
    folder.mkdir(parents=True)
    train, test, unlabeled = _rand_images(rng, 3, 96), _rand_images(rng, 2, 96), _rand_images(rng, 4, 96)
    train[0, 0, 1] = [10, 20, 30]  # row 0, column 1: catches a swapped H/W transpose
    (folder / "train_X.bin").write_bytes(_stl_bytes(train))
    (folder / "train_y.bin").write_bytes(bytes([1, 10, 5]))
    (folder / "test_X.bin").write_bytes(_stl_bytes(test))
    (folder / "test_y.bin").write_bytes(bytes([2, 3]))
    (folder / "unlabeled_X.bin").write_bytes(_stl_bytes(unlabeled))
    names = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    (folder / "class_names.txt").write_text("\n".join(names) + "\n")

    classes, splits = real.load(make_cfg("stl10", tmp_path))
    assert classes == names
    assert sorted(splits) == ["test", "train", "unlabeled"]
    for split, expected in (("train", train), ("test", test), ("unlabeled", unlabeled)):
        got = splits[split].images
        assert got.shape == expected.shape and got.dtype == np.uint8 and got.flags.c_contiguous
        np.testing.assert_array_equal(got, expected)
    assert splits["train"].images[0, 0, 1].tolist() == [10, 20, 30]
    assert splits["train"].labels.tolist() == [0, 9, 4]
    assert splits["test"].labels.tolist() == [1, 2]
    assert splits["unlabeled"].labels.tolist() == [-1, -1, -1, -1]
    assert splits["unlabeled"].labels.dtype == np.int64


# --- image folders ----------------------------------------------------------------------------

COLOURS = {"cat": [(255, 0, 0), (200, 10, 10), (150, 20, 20)], "dog": [(0, 0, 255), (10, 10, 200), (20, 20, 150)]}


def write_tree(root: Path, sizes: tuple[tuple[int, int], ...] = ((40, 30), (20, 50), (16, 16))) -> None:
    for cls, colours in COLOURS.items():
        (root / cls).mkdir(parents=True)
        for i, (colour, size) in enumerate(zip(colours, sizes, strict=True)):
            Image.new("RGB", size, colour).save(root / cls / f"{i}.png")


def test_imagefolder_single_tree_is_split_deterministically(tmp_path: Path) -> None:
    write_tree(tmp_path / "imgs")
    (tmp_path / "imgs" / "cat" / ".DS_Store").write_bytes(b"\x00junk")  # hidden files are ignored
    cfg = make_cfg("imagefolder", seed=3, path=str(tmp_path / "imgs"), image_size=8, test_fraction=0.34)
    classes, splits = real.load(cfg)
    assert classes == ["cat", "dog"]
    assert sorted(splits) == ["test", "train"]
    train, test = splits["train"], splits["test"]
    assert train.images.shape == (4, 8, 8, 3) and test.images.shape == (2, 8, 8, 3)
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int64
    assert sorted(train.labels.tolist()) == [0, 0, 1, 1] and sorted(test.labels.tolist()) == [0, 1]
    for split in (train, test):
        for image, label in zip(split.images, split.labels, strict=True):
            colour = tuple(int(v) for v in image[4, 4])
            assert colour in COLOURS[classes[label]]
            assert (image == image[0, 0]).all()  # a solid colour stays solid after resize and crop
    all_colours = {tuple(int(v) for v in im[0, 0]) for s in (train, test) for im in s.images}
    assert all_colours == {c for cs in COLOURS.values() for c in cs}

    again = real.load(cfg)[1]
    for name in ("train", "test"):
        np.testing.assert_array_equal(again[name].images, splits[name].images)
        np.testing.assert_array_equal(again[name].labels, splits[name].labels)


def test_imagefolder_train_test_layout(tmp_path: Path) -> None:
    write_tree(tmp_path / "imgs" / "train")
    write_tree(tmp_path / "imgs" / "test", sizes=((64, 64), (10, 12), (30, 8)))
    classes, splits = real.load(make_cfg("imagefolder", path=str(tmp_path / "imgs"), image_size=12))
    assert classes == ["cat", "dog"]
    for split in ("train", "test"):
        assert splits[split].images.shape == (6, 12, 12, 3)
        assert splits[split].labels.tolist() == [0, 0, 0, 1, 1, 1]
        assert splits[split].images[3, 6, 6].tolist() == [0, 0, 255]


def test_imagefolder_resizes_shorter_side_then_center_crops(tmp_path: Path) -> None:
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        wide = np.zeros((20, 60, 3), dtype=np.uint8)
        wide[:, :20] = (255, 0, 0)  # left third red, middle green, right third blue
        wide[:, 20:40] = (0, 255, 0)
        wide[:, 40:] = (0, 0, 255)
        for i in range(2):
            Image.fromarray(wide).save(tmp_path / "imgs" / cls / f"{i}.png")
    _, splits = real.load(make_cfg("imagefolder", path=str(tmp_path / "imgs"), image_size=10, test_fraction=0.5))
    image = splits["train"].images[0]
    assert image.shape == (10, 10, 3)
    assert image[5, 5].tolist() == [0, 255, 0]  # only the green middle survives the center crop
    assert image[:, 1:-1].max(axis=(0, 1))[[0, 2]].tolist() == [0, 0]


def test_imagefolder_class_mismatch_between_train_and_test(tmp_path: Path) -> None:
    write_tree(tmp_path / "imgs" / "train")
    write_tree(tmp_path / "imgs" / "test")
    (tmp_path / "imgs" / "test" / "dog").rename(tmp_path / "imgs" / "test" / "wolf")
    with pytest.raises(DataError, match="wolf"):
        real.load(make_cfg("imagefolder", path=str(tmp_path / "imgs")))


def test_imagefolder_corrupt_file_fails_with_its_path(tmp_path: Path) -> None:
    write_tree(tmp_path / "imgs")
    bad = tmp_path / "imgs" / "dog" / "x.png"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    with pytest.raises(DataError) as info:
        real.load(make_cfg("imagefolder", path=str(tmp_path / "imgs"), image_size=8, test_fraction=0.5))
    assert str(bad) in str(info.value)
    assert "data.imagefolder.on_corrupt=skip" in str(info.value)


def test_imagefolder_corrupt_file_skipped_with_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_tree(tmp_path / "imgs")
    bad = tmp_path / "imgs" / "dog" / "x.png"
    bad.write_bytes(b"this is not a png")
    cfg = make_cfg("imagefolder", path=str(tmp_path / "imgs"), image_size=8, test_fraction=0.5, on_corrupt="skip")
    with caplog.at_level(logging.WARNING, logger="selfsup.data.real"):
        classes, splits = real.load(cfg)
    assert sum(len(s.images) for s in splits.values()) == 6
    assert any(str(bad) in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_imagefolder_needs_a_path() -> None:
    with pytest.raises(ConfigError, match=r"data\.imagefolder\.path"):
        real.load(make_cfg("imagefolder"))


def test_imagefolder_empty_class_or_no_classes(tmp_path: Path) -> None:
    write_tree(tmp_path / "imgs")
    (tmp_path / "imgs" / "empty").mkdir()
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "imgs" / "empty"))):
        real.load(make_cfg("imagefolder", path=str(tmp_path / "imgs")))
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "nothing"))):
        real.load(make_cfg("imagefolder", path=str(tmp_path / "nothing")))
    with pytest.raises(DataError, match="does not exist"):
        real.load(make_cfg("imagefolder", path=str(tmp_path / "absent")))

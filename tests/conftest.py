"""Shared fixtures: a throwaway project folder with the repository's params files."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from selfsup.data.prepare import channel_stats
from selfsup.data.store import ImageSplit, save_dataset

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """A folder holding a copy of params/ and params.yaml, to write params into.

    Tests under tests/methods/ get ``preset: paper`` (the methods' paper defaults alone), so tuning
    a preset's ``per_method`` settings never changes what they check.
    """
    shutil.copytree(REPO / "params", tmp_path / "params")
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    if (REPO / "tests" / "methods") in request.path.parents:
        write_params(tmp_path, preset="paper")
    return tmp_path


def write_params(project: Path, **values: object) -> Path:
    """Update params.yaml in ``project`` with ``values`` (nested dicts allowed)."""
    path = project / "params.yaml"
    data = yaml.safe_load(path.read_text())
    data.update(values)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def tiny_dataset(root: Path, n_train: int = 64, n_test: int = 32, size: int = 16, seed: int = 0) -> Path:
    """A small labeled dataset of random images in the prepared format."""
    rng = np.random.default_rng(seed)

    def split(n: int) -> ImageSplit:
        return ImageSplit(images=rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
                          labels=rng.integers(0, 4, n).astype(np.int64))

    splits = {"train": split(n_train), "test": split(n_test)}
    mean, std = channel_stats(splits["train"].images)
    save_dataset(root, "tiny", ["a", "b", "c", "d"], splits, extra={"mean": mean, "std": std})
    return root


TINY_RUN = {
    "epochs": 3,
    "batch_size": 16,
    "lr": 0.1,
    "backbone": {"name": "small_cnn", "width": 4},
    "projector": {"layers": 2, "hidden_dim": 16, "out_dim": 8},
    "views": {"size": 16, "blur": {"p": 0.5}},
    "optim": {"name": "sgd", "warmup_epochs": 1},
    "train": {"checkpoint_every": 5, "log_every": 2, "threads": 1},
    "eval": {"linear": {"epochs": 5}},
}


# Image runs as the pretrain and evaluate stages lay them out, for the figure tests.
def write_run(root: Path, name: str, linear: float, knn: float, *, method: str | None = None,
              knobs: dict | None = None, collapse: tuple[float, ...] = (0.05, 0.08), dim: int = 64,
              losses: tuple[float, ...] = (5.0, 4.0)) -> Path:
    """A run folder ``root/name`` with config, history, train and test metrics."""
    pre, ev = root / name / "pretrain", root / name / "evaluate"
    pre.mkdir(parents=True)
    ev.mkdir(parents=True)
    config = {"method": method or name.partition("-")[0], "dataset": "digits-bg", "projector": {"out_dim": dim},
              **(knobs or {})}
    (pre / "config.yaml").write_text(yaml.safe_dump(config))
    rows = ["epoch,step,loss,collapse_std,lr"]
    pairs = enumerate(zip(losses, collapse, strict=True), start=1)
    rows += [f"{epoch},{10 * epoch},{loss},{std},0.1" for epoch, (loss, std) in pairs]
    (pre / "history.csv").write_text("\n".join(rows) + "\n")
    (pre / "metrics.json").write_text(json.dumps({
        "loss": losses[-1], "collapse_std": collapse[-1], "collapse_std_x_sqrt_d": collapse[-1] * dim ** 0.5,
        "epochs": len(losses), "steps": 10 * len(losses)}))
    (ev / "metrics.json").write_text(json.dumps({"linear_top1": linear, "knn_top1": knn,
                                                 "random_linear_top1": 0.15, "random_knn_top1": 0.17}))
    return root / name


@pytest.fixture
def make_run():
    """The ``write_run`` helper, as a fixture."""
    return write_run


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny matrices: a second intra-op thread only adds synchronisation (40x slower on a busy 2-core box)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def kill_after_first_checkpoint(cmd: list[str], cwd: Path, checkpoint: Path) -> None:
    """Start ``cmd`` and SIGKILL it as soon as ``checkpoint`` appears."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not checkpoint.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert checkpoint.exists() and proc.poll() is None, "the run ended before its first checkpoint could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()


# digits-bg at 16 px with one composite per scan: 1258 train and 539 test images in about a second.
SMALL_DIGITS_BG = {"image_size": 16, "digit_min": 4, "digit_max": 10, "train_per_scan": 1, "test_per_scan": 1,
                   "background_pool": 5}


@pytest.fixture(scope="session")
def small_digits_bg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared digits-bg folder (with factors and masks) at the settings above, shared by the session."""
    from selfsup.data.prepare import prepare_images
    from selfsup.params import config_from_dict

    root = tmp_path_factory.mktemp("digits_bg") / "images"
    prepare_images(config_from_dict({"data": {"digits_bg": SMALL_DIGITS_BG}}), root)
    return root

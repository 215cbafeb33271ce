"""The supervised ceiling of the baseline stage: it learns, at the pretraining's budget, deterministically."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import write_params
from selfsup.config import Config
from selfsup.data.prepare import channel_stats
from selfsup.data.store import ImageSplit, save_dataset
from selfsup.errors import ConfigError, DataError
from selfsup.eval.evaluate import baseline
from selfsup.eval.supervised import train_supervised
from selfsup.params import load_config
from selfsup.stage_config import restrict

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one intra-op thread

RUN = {
    "epochs": 12,
    "batch_size": 32,
    "backbone": {"name": "small_cnn", "width": 8},
    "views": {"size": 16, "crop_scale": [0.5, 1.0]},
    "eval": {"linear": {"epochs": 5}, "knn": {"k": 5}, "supervised": {"lr": 0.4}},
}



def _stripes(n: int, rng: np.random.Generator) -> ImageSplit:
    """16x16 images whose class is a pattern: horizontal stripes, vertical stripes, a checkerboard or
    none, each in two random colours with a random phase, so colour says nothing about the class."""
    labels = np.arange(n) % 4
    yy, xx = np.mgrid[:16, :16]
    images = np.empty((n, 16, 16, 3), dtype=np.uint8)
    for i, c in enumerate(labels):
        phase = rng.integers(0, 8)
        on = [(yy + phase) // 4 % 2, (xx + phase) // 4 % 2, ((yy + phase) // 4 + (xx + phase) // 4) % 2,
              np.zeros_like(yy)][c].astype(bool)
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        noise = rng.integers(-20, 21, (16, 16, 3))
        images[i] = np.clip(np.where(on[..., None], a, b) + noise, 0, 255)
    return ImageSplit(images=images, labels=labels.astype(np.int64))


def stripes_dataset(root: Path, n_train: int = 128, n_test: int = 64, unlabeled: int = 0,
                    train_labels: np.ndarray | None = None) -> Path:
    rng = np.random.default_rng(0)
    splits = {"train": _stripes(n_train, rng), "test": _stripes(n_test, rng)}
    if train_labels is not None:
        splits["train"] = ImageSplit(images=splits["train"].images, labels=train_labels)
    if unlabeled:
        extra = _stripes(unlabeled, rng)
        splits["unlabeled"] = ImageSplit(images=extra.images, labels=np.full(unlabeled, -1, dtype=np.int64))
    mean, std = channel_stats(splits["train"].images)
    save_dataset(root, "stripes", ["horizontal", "vertical", "checker", "plain"], splits,
                 extra={"mean": mean, "std": std})
    return root


def _config(project: Path, seed: int = 0, **supervised: object) -> Config:
    """The baseline stage's view of the run: reading anything it does not declare fails."""
    run = {**RUN, "seed": seed, "eval": {**RUN["eval"], "supervised": {**RUN["eval"]["supervised"], **supervised}}}
    return restrict(load_config(write_params(project, **run)), "baseline")


def test_the_supervised_model_learns_the_patterns_far_beyond_chance_and_the_random_backbone(project) -> None:
    data = stripes_dataset(project / "data")
    metrics = baseline(_config(project), data)
    sup, random = metrics["supervised"], metrics["random_backbone"]
    assert set(sup) == {"top1", "linear_top1", "knn_top1"}
    assert sup["top1"] >= 0.75  # chance is 0.25
    assert sup["linear_top1"] >= random["linear_top1"] + 0.3
    assert sup["knn_top1"] > random["knn_top1"]


def test_disabled_it_is_not_trained_and_the_other_rows_are_unchanged(project) -> None:
    data = stripes_dataset(project / "data")
    metrics = baseline(_config(project, enabled=False), data)
    assert set(metrics) == {"random_backbone", "raw_pixels"}


def test_same_seed_same_weights_different_seed_different_weights(project) -> None:
    data = stripes_dataset(project / "data", n_train=64)
    cfg = _config(project, epochs=2)
    rng_state = torch.get_rng_state()
    first, head, steps = train_supervised(cfg, data, progress=False)
    assert torch.equal(torch.get_rng_state(), rng_state)  # the caller's RNG is left alone
    again, head_again, _ = train_supervised(cfg, data, progress=False)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in first.state_dict().items())
    assert torch.equal(head.weight, head_again.weight)
    other, _, _ = train_supervised(_config(project, seed=1, epochs=2), data, progress=False)
    assert not torch.equal(first.state_dict()["features.0.0.weight"], other.state_dict()["features.0.0.weight"])
    assert steps == 2 * (64 // 32)


def test_it_takes_the_pretrainings_steps_counting_the_unlabeled_images(project) -> None:
    data = stripes_dataset(project / "data", n_train=64, unlabeled=96)
    cfg = _config(project, epochs=1)
    _, _, steps = train_supervised(cfg, data, progress=False)
    assert steps == (64 + 96) // 32  # five batches of 32: two passes over the 64 labeled images and one more batch
    # epochs None (the schema default, which the digits-cpu preset overrides): the pretraining's own epochs
    whole = replace(cfg, eval=replace(cfg.eval, supervised=replace(cfg.eval.supervised, epochs=None)))
    _, _, steps = train_supervised(whole, data, progress=False)
    assert steps == RUN["epochs"] * 5


def test_bad_data_and_sizes_are_clear_errors(project) -> None:
    labels = np.arange(64) % 4
    labels[:3] = -1
    data = stripes_dataset(project / "partly", n_train=64, train_labels=labels)
    with pytest.raises(DataError, match="3 unlabeled images.*eval.supervised.enabled=false"):
        train_supervised(_config(project), data, progress=False)
    data = stripes_dataset(project / "data", n_train=16)
    with pytest.raises(ConfigError, match="batch_size=32 is larger than the 16 labeled train images"):
        train_supervised(_config(project), data, progress=False)

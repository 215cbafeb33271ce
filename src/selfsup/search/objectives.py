"""What one search trial trains and measures: a short run, then the Zipf-KL of its representation.

The fitness never sees a label (Piergiovanni et al. 2020, Sec. 3.3). Each trial also reports the
kNN accuracy of the same representation on the test split, for the figure that asks whether a
lower Zipf-KL goes with a higher accuracy; the sampler is only told the fitness.
"""

from __future__ import annotations

import dataclasses
import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from selfsup.config import Config
from selfsup.eval.zipf import zipf_kl


@dataclass(frozen=True)
class TrialResult:
    fitness: float
    metrics: dict[str, float]


def _knn(train: np.ndarray, train_y: np.ndarray, test: np.ndarray, test_y: np.ndarray, cfg: Config
         ) -> dict[str, float]:
    """kNN accuracy of the features on the test split, and chance (1 / classes) next to it."""
    from selfsup.eval.knn import knn_accuracy

    n_classes = int(max(train_y.max(), test_y.max())) + 1
    accuracy = knn_accuracy(torch.as_tensor(train), torch.as_tensor(train_y), torch.as_tensor(test),
                            torch.as_tensor(test_y), n_classes, cfg.eval.knn.k, cfg.eval.knn.temperature)
    return {"knn_top1": accuracy, "chance_top1": 1.0 / n_classes}


@functools.lru_cache(maxsize=1)
def _video(folder: str) -> dict:
    from selfsup.data.video_store import load_video_features

    return load_video_features(Path(folder))[0]


def elo_trial(cfg: Config, data_dir: Path) -> TrialResult:
    """Train the ELo networks for ``search.epochs`` with the trial's weights; Zipf-KL of the RGB features."""
    from selfsup.elo.features import rgb_features
    from selfsup.elo.train import train_elo

    splits = _video(str(Path(data_dir).resolve()))
    train, test = splits["train"], splits["test"]
    short = dataclasses.replace(cfg, elo=dataclasses.replace(cfg.elo, epochs=cfg.search.epochs))
    result = train_elo(short, train.frames, train.flow, train.logmel, progress=False)
    ftr = rgb_features(result.rgb, train.frames, cfg.elo.batch_size)
    fte = rgb_features(result.rgb, test.frames, cfg.elo.batch_size)
    fitness = zipf_kl(ftr, cfg.zipf.k, cfg.zipf.exponent, cfg.zipf.seed, cfg.zipf.n_init)
    return TrialResult(fitness, {**_knn(ftr, train.labels, fte, test.labels, cfg),
                                 "final_loss": float(result.history[-1]["loss"])})


def image_trial(cfg: Config, data_dir: Path) -> TrialResult:
    """Pretrain ``method`` for ``search.epochs``; Zipf-KL of its frozen train-split features."""
    from selfsup.augment.views import EvalTransform
    from selfsup.data.store import load_meta, load_split
    from selfsup.eval.evaluate import load_model
    from selfsup.eval.features import extract_features
    from selfsup.pretrain import pretrain

    short = dataclasses.replace(cfg, epochs=cfg.search.epochs)
    with tempfile.TemporaryDirectory(prefix="selfsup-trial-") as tmp:
        train_metrics = pretrain(short, data_dir, Path(tmp) / "out", Path(tmp) / "ck", track=False)
        extractor, view_size, _ = load_model(Path(tmp) / "out" / "model.pt")
    meta = load_meta(data_dir)
    transform = EvalTransform(view_size, meta["mean"], meta["std"])
    train, test = load_split(data_dir, "train"), load_split(data_dir, "test")
    device = torch.device("cpu")
    ftr = extract_features(extractor, train.images, transform, device, cfg.eval.batch_size, "train features")
    fte = extract_features(extractor, test.images, transform, device, cfg.eval.batch_size, "test features")
    fitness = zipf_kl(ftr.numpy(), cfg.zipf.k, cfg.zipf.exponent, cfg.zipf.seed, cfg.zipf.n_init)
    return TrialResult(fitness, {**_knn(ftr.numpy(), train.labels, fte.numpy(), test.labels, cfg),
                                 "final_loss": float(train_metrics["loss"])})


def run_trial(cfg: Config, data_dir: Path) -> TrialResult:
    return elo_trial(cfg, data_dir) if cfg.search.target == "elo" else image_trial(cfg, data_dir)

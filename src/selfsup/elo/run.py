"""The ``elo_pretrain`` and ``elo_evaluate`` stages' library functions.

``elo_pretrain`` trains the ELo networks on the unlabeled train clips with the configured loss
weights (``elo.weights``, or the search's best) and keeps the RGB network; ``elo_evaluate`` scores
its clip embeddings on the action labels with the same linear probe and kNN as the image branch,
next to the same RGB network randomly initialised, and reports the Zipf-KL of each
(Piergiovanni et al. 2020, Sec. 3.3 and 4).
"""

from __future__ import annotations

import contextlib
import logging
import math
from pathlib import Path

import numpy as np
import torch

from selfsup import dist
from selfsup.config import Config
from selfsup.data.video_store import VideoSplit, load_video_features
from selfsup.elo.features import rgb_features
from selfsup.elo.model import CHANNELS, EloModel
from selfsup.elo.networks import VideoEncoder
from selfsup.elo.train import elo_loop
from selfsup.errors import DataError
from selfsup.eval.evaluate import probe
from selfsup.eval.zipf import kl_divergence, ranked_masses, zipf_prior
from selfsup.model_file import load_model_file, save_model_file
from selfsup.run_outputs import write_run_outputs

log = logging.getLogger(__name__)
MODEL = "rgb.pt"


def _tags(cfg: Config, meta: dict, stage: str) -> dict[str, str]:
    built = cfg.elo.weights.built()
    return {"stage": stage, "dataset": meta.get("dataset", "video"), "method": "elo",
            "modalities": "+".join(built), "distilled": str(any(getattr(cfg.elo.weights, m).distill > 0
                                                                 for m in built if m != "rgb")).lower()}


def elo_pretrain(cfg: Config, features_dir: Path, out_dir: Path, checkpoint_dir: Path, track: bool = True,
                 tags: dict[str, str] | None = None) -> dict:
    """Train on the train split's clips (no labels); write ``rgb.pt``, history, loss plot and metrics.

    ``tags`` are added to the MLflow run's (e.g. ``figure`` for runs of the paper pipeline). Under
    torchrun every process trains its rows of each batch and the main one writes the outputs.
    """
    splits, meta = load_video_features(features_dir)
    train = splits["train"]
    out_dir = Path(out_dir)
    loop = elo_loop(cfg, train.frames, train.flow, train.logmel, checkpoint_dir=checkpoint_dir)
    loop.try_resume()
    params = {k: v for k, v in cfg.flat().items() if k.split(".")[0] in ("seed", "elo", "video", "train")}
    tracker = loop.attach_run(track, {**_tags(cfg, meta, "elo_pretrain"), **(tags or {})},
                              f"elo-{meta.get('dataset', 'video')}-{cfg.elo.epochs}ep", params)
    with tracker.failing_on_error() if tracker else contextlib.nullcontext():
        history = loop.fit()
        last = history.rows[-1]
        metrics = {"loss": last["loss"], "collapse_std": last.get("collapse_std", math.nan),
                   "epochs": cfg.elo.epochs, "seconds": loop.seconds}
        title = f"ELo ({'+'.join(cfg.elo.weights.built())})"
        write_run_outputs(loop, tracker, cfg, metrics, title, out_dir, out_dir, out_dir / MODEL,
                          lambda path: save_model_file(path, cfg, loop.task.model.rgb.state_dict()))
    dist.shutdown()
    return metrics


def _encoder(cfg: Config) -> VideoEncoder:
    return VideoEncoder(CHANNELS["rgb"], cfg.elo.width, cfg.elo.embed_dim, cfg.elo.input_size)


def load_rgb(model_path: Path, random_init: bool = False) -> tuple[VideoEncoder, Config]:
    """The trained RGB network and its config; with ``random_init`` its untrained initialisation."""
    state, cfg = load_model_file(model_path, "elo_pretrain")
    if random_init:
        torch.manual_seed(cfg.seed)
        return EloModel(cfg.elo).rgb.eval(), cfg
    encoder = _encoder(cfg)
    encoder.load_state_dict(state["state"])
    return encoder.eval(), cfg


def _scores(encoder: VideoEncoder, train: VideoSplit, test: VideoSplit, n_classes: int,
            cfg: Config) -> tuple[dict, np.ndarray]:
    ftr = rgb_features(encoder, train.frames, cfg.elo.batch_size)
    fte = rgb_features(encoder, test.frames, cfg.elo.batch_size)
    scores = probe(torch.from_numpy(ftr), train.labels, torch.from_numpy(fte), test.labels, n_classes, cfg)
    masses = ranked_masses(ftr, cfg.zipf.k, cfg.zipf.seed, cfg.zipf.n_init)
    scores["zipf_kl"] = kl_divergence(masses, zipf_prior(cfg.zipf.k, cfg.zipf.exponent))
    return scores, masses


def elo_evaluate(cfg: Config, features_dir: Path, model_path: Path) -> tuple[dict, dict]:
    """Linear probe, kNN and Zipf-KL of the trained RGB network and of its random initialisation.

    Returns the metrics and the ranked cluster masses of both next to the Zipf prior (for the figure).
    """
    splits, meta = load_video_features(features_dir)
    train, test = splits["train"], splits["test"]
    if (np.asarray(train.labels) < 0).any() or (np.asarray(test.labels) < 0).any():
        raise DataError(f"the clips in {features_dir} must all be labeled for elo_evaluate")
    n_classes = len(meta["classes"])
    trained, _ = load_rgb(model_path)
    random_net, _ = load_rgb(model_path, random_init=True)
    ours, masses = _scores(trained, train, test, n_classes, cfg)
    rand, random_masses = _scores(random_net, train, test, n_classes, cfg)
    metrics = {**ours, **{f"random_{k}": v for k, v in rand.items()},
               "gain_linear": ours["linear_top1"] - rand["linear_top1"],
               "gain_knn": ours["knn_top1"] - rand["knn_top1"], "chance_top1": 1.0 / n_classes}
    if ours["linear_top1"] < rand["linear_top1"]:
        log.warning("the trained RGB network scores below its random initialisation (linear probe %.1f%% < %.1f%%)",
                    100 * ours["linear_top1"], 100 * rand["linear_top1"])
    prior = zipf_prior(cfg.zipf.k, cfg.zipf.exponent)
    clusters = {"k": cfg.zipf.k, "exponent": cfg.zipf.exponent, "masses": masses.tolist(),
                "random_masses": random_masses.tolist(), "zipf_prior": prior.tolist()}
    return metrics, clusters

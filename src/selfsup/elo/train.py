"""Joint training of the ELo modality networks (Piergiovanni et al. 2020, arXiv:2002.12177, Sec. 3.1).

All networks of :class:`~selfsup.elo.model.EloModel` train together on the weighted loss of Eq. 1
with AdamW at a constant ``elo.lr``; only the RGB network is returned. No labels are read.

Determinism and resume: the model is initialised from ``cfg.seed``; epoch e draws its data order,
augmentation and task labels from one generator seeded with (seed, e); a checkpoint is written
atomically after every epoch with the model, optimiser, history and RNG states. A later call with
the same ``elo`` settings (``elo.epochs`` aside: it only says where to stop), seed and data shapes
continues from it, so training 2 epochs and then resuming to 3 gives the weights of 3 epochs
straight (bit for bit on CPU).

Inputs: flow is standardised by its root mean square over the training clips (0 stays "no motion"),
the log-mel by its mean and standard deviation; RGB is scaled to [-1, 1] only.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from selfsup.checkpoint import (
    LAST,
    code_version,
    fingerprint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from selfsup.config import Config
from selfsup.elo.augment import jitter, random_crop
from selfsup.elo.inputs import prepare_flow, prepare_frames, prepare_logmel
from selfsup.elo.model import EloModel
from selfsup.elo.networks import VideoEncoder
from selfsup.elo.tasks import predict_split
from selfsup.errors import ConfigError, DataError, TrainingError
from selfsup.schema import to_dict
from selfsup.train import collapse_std, pick_device

log = logging.getLogger(__name__)

COLLAPSE_CLIPS = 128  # clips whose RGB embeddings give the per-epoch collapse diagnostic


@dataclass
class EloResult:
    """``rgb``: the trained RGB network (eval mode); ``history``: one dict per epoch (``loss``, each
    ``<modality>/<task>`` loss, ``collapse_std``, ``seconds``); ``seconds``: training time of this call."""

    rgb: VideoEncoder
    history: list[dict[str, float]]
    seconds: float


def _prepare(needed: tuple[str, ...], frames: np.ndarray, flow: np.ndarray | None, logmel: np.ndarray | None,
             size: int) -> dict[str, torch.Tensor]:
    """Network inputs (see :mod:`selfsup.elo.inputs`) of the modalities in ``needed``, standardised."""
    if np.asarray(frames).ndim != 5:
        raise DataError(f"frames of shape {np.shape(frames)}: expected uint8 (N, T, H, W, 3)")
    n, t = frames.shape[:2]
    data = {"rgb": prepare_frames(frames, size)}
    if "flow" in needed:
        if flow is None:
            raise DataError("the ELo weights use optical flow (a flow task, or cross_predict from rgb/gray) but no "
                            "flow was given; pass the extract stage's flow or set those weights to 0")
        if flow.shape[:2] != (n, t - 1):
            raise DataError(f"flow of shape {flow.shape} for frames {frames.shape}: expected (N, T-1, H, W, 2) = "
                            f"({n}, {t - 1}, ...)")
        x = prepare_flow(flow, size)
        data["flow"] = x / x.square().mean().sqrt().clamp_min(1e-6)
    if "audio" in needed:
        if logmel is None:
            raise DataError("the ELo weights use audio but no log-mel was given; pass the extract stage's log-mel "
                            "or set the audio weights to 0")
        if len(logmel) != n:
            raise DataError(f"{len(logmel)} log-mel spectrograms for {n} clips")
        x = prepare_logmel(logmel, t)
        data["audio"] = (x - x.mean()) / x.std().clamp_min(1e-6)
    return data


def _check_predict(model: EloModel, t: int) -> None:
    for m, tasks in model.weights.items():
        if "predict" in tasks:
            predict_split(t - 1 if m == "flow" else t, model.elo.predict_frames)


def _fingerprint(cfg: Config, data: dict[str, torch.Tensor]) -> str:
    elo = {k: v for k, v in to_dict(cfg.elo).items() if k != "epochs"}
    return fingerprint({"elo": elo, "seed": cfg.seed, "data": {k: list(v.shape) for k, v in data.items()},
                        "code": code_version()})


def _augmented(batch: dict[str, torch.Tensor], cfg: Config, g: torch.Generator) -> dict[str, torch.Tensor]:
    rgb, flow = random_crop(batch["rgb"], batch.get("flow"), cfg.elo.crop_min, g)
    out = {**batch, "rgb": jitter(rgb, cfg.elo.brightness, g)}
    if flow is not None:
        out["flow"] = flow
    return out


@torch.no_grad()
def _collapse(model: EloModel, rgb: torch.Tensor, device: torch.device) -> float:
    model.eval()
    std = collapse_std(model.rgb(rgb[:COLLAPSE_CLIPS].to(device)).embedding).item()
    model.train()
    return std


def train_elo(cfg: Config, frames: np.ndarray, flow: np.ndarray | None = None, logmel: np.ndarray | None = None,
              checkpoint_dir: Path | None = None, progress: bool = True) -> EloResult:
    """Train the ELo networks on unlabeled clips and return the RGB one.

    ``frames`` uint8 (N, T, H, W, 3); ``flow`` float (N, T-1, H, W, 2) in pixels/frame; ``logmel``
    (N, n_mels, n_steps). Flow and log-mel are only needed when a weight uses them. With
    ``checkpoint_dir``, ``last.pt`` there is written after every epoch and resumed from when it
    belongs to these settings. A non-finite loss raises :class:`TrainingError`.
    """
    elo = cfg.elo
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    device = torch.device(pick_device(cfg.train.device))
    torch.manual_seed(cfg.seed)
    model = EloModel(cfg).to(device)
    data = _prepare(model.inputs, frames, flow, logmel, elo.input_size)
    n, t = frames.shape[:2]
    _check_predict(model, t)
    steps = n // elo.batch_size
    if steps == 0:
        raise ConfigError(f"elo.batch_size={elo.batch_size} is larger than the {n} training clips")
    optimizer = torch.optim.AdamW(model.parameters(), lr=elo.lr, weight_decay=elo.weight_decay)
    key = _fingerprint(cfg, data)
    history: list[dict[str, float]] = []
    start = 0
    path = None if checkpoint_dir is None else Path(checkpoint_dir) / LAST
    if path is not None and path.is_file():
        state = load_checkpoint(path, map_location=device)
        if state.get("fingerprint") == key:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            set_rng_state(state["rng"])
            history = list(state["history"])
            start = int(state["epoch"])
            log.info("resumed ELo training from %s at epoch %d/%d", path, start, elo.epochs)
        else:
            log.warning("checkpoint %s belongs to other ELo settings or data; starting from scratch", path)

    model.train()
    began = time.perf_counter()
    bar = tqdm(total=elo.epochs * steps, initial=min(start, elo.epochs) * steps, desc="elo", disable=not progress,
               dynamic_ncols=True, mininterval=1.0)
    for epoch in range(start, elo.epochs):
        epoch_began = time.perf_counter()
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
        perm = torch.randperm(n, generator=g)
        sums: dict[str, float] = {}
        for i in range(steps):
            index = perm[i * elo.batch_size : (i + 1) * elo.batch_size]
            batch = _augmented({k: v[index] for k, v in data.items()}, cfg, g)
            out = model({k: v.to(device) for k, v in batch.items()}, g)
            values = {k: v.item() for k, v in out.items()}
            if not math.isfinite(values["loss"]):
                bad = ", ".join(k for k, v in values.items() if not math.isfinite(v) and k != "loss")
                raise TrainingError(f"the ELo loss became {values['loss']} at epoch {epoch + 1}, step {i + 1} "
                                    f"(non-finite: {bad or 'the weighted sum'}); no checkpoint was written for it. "
                                    f"Check the inputs for NaN/inf and lower elo.lr (now {elo.lr})")
            optimizer.zero_grad(set_to_none=True)
            out["loss"].backward()
            optimizer.step()
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.update(1)
            bar.set_postfix(loss=f"{values['loss']:.4f}")
        seconds = time.perf_counter() - epoch_began
        history.append({"epoch": epoch + 1, **{k: v / steps for k, v in sums.items()},
                        "collapse_std": _collapse(model, data["rgb"], device), "seconds": seconds})
        if path is not None:
            save_checkpoint(path, {"fingerprint": key, "epoch": epoch + 1, "model": model.state_dict(),
                                   "optimizer": optimizer.state_dict(), "rng": rng_state(), "history": history})
    bar.close()
    model.eval()
    return EloResult(model.rgb, history, time.perf_counter() - began)

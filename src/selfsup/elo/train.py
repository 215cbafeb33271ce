"""Joint training of the ELo modality networks (Piergiovanni et al. 2020, arXiv:2002.12177, Sec. 3.1).

All networks of :class:`~selfsup.elo.model.EloModel` train together on the weighted loss of Eq. 1
with AdamW at a constant ``elo.lr``; only the RGB network is returned. No labels are read.
:class:`EloTraining` is the :class:`~selfsup.loop.TrainingTask`; the generic
:class:`~selfsup.loop.Loop` runs it, so ELo has the image methods' checkpoints, resume, NaN stop,
logging, ``train.amp`` and torchrun (each process takes its rows of the global batch).

Determinism and resume: the model is initialised from ``cfg.seed``; epoch e draws its data order,
augmentation and task labels from one generator seeded with (seed, e), whose state the checkpoint
keeps. A later call with the same ``elo`` settings (``elo.epochs`` aside: it only says where to
stop), seed, ``train`` settings and data shapes continues from it, so training 2 epochs and then
resuming to 3 gives the weights of 3 epochs straight (bit for bit on CPU).

Inputs: flow is standardised by its root mean square over the training clips (0 stays "no motion"),
the log-mel by its mean and standard deviation; RGB is scaled to [-1, 1] only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from selfsup import dist
from selfsup.config import Config
from selfsup.elo.augment import jitter, random_crop
from selfsup.elo.inputs import prepare_flow, prepare_frames, prepare_logmel
from selfsup.elo.model import EloModel
from selfsup.elo.networks import VideoEncoder
from selfsup.elo.tasks import predict_split
from selfsup.errors import ConfigError, DataError
from selfsup.loop import Loop, Optimisation, StepOutput, TrainingTask, collapse_std, start_process
from selfsup.parallel import data_parallel
from selfsup.schema import to_dict

COLLAPSE_CLIPS = 128  # clips whose RGB embeddings give the per-epoch collapse diagnostic


@dataclass
class EloResult:
    """``rgb``: the trained RGB network (eval mode); ``history``: one dict per epoch (``epoch``, ``step``,
    ``loss``, each ``<modality>/<task>`` loss, ``collapse_std``, ``lr``); ``seconds``: training time,
    resumed parts included."""

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


def _augmented(batch: dict[str, torch.Tensor], cfg: Config, g: torch.Generator) -> dict[str, torch.Tensor]:
    rgb, flow = random_crop(batch["rgb"], batch.get("flow"), cfg.elo.crop_min, g)
    out = {**batch, "rgb": jitter(rgb, cfg.elo.brightness, g)}
    if flow is not None:
        out["flow"] = flow
    return out


class EloTraining(TrainingTask):
    """The ELo networks learning from unlabeled clips (see the module docstring)."""

    def __init__(self, cfg: Config, frames: np.ndarray, flow: np.ndarray | None = None,
                 logmel: np.ndarray | None = None) -> None:
        elo = cfg.elo
        self.cfg = cfg
        self.name = "elo"
        self.device = start_process(cfg.train, cfg.seed, elo.batch_size, "elo.batch_size")
        self.world = dist.world_size()
        self.model = EloModel(cfg.elo).to(self.device)
        self.data = _prepare(self.model.inputs, frames, flow, logmel, elo.input_size)
        n, t = frames.shape[:2]
        _check_predict(self.model, t)
        self.steps_per_epoch = n // elo.batch_size
        if self.steps_per_epoch == 0:
            raise ConfigError(f"elo.batch_size={elo.batch_size} is larger than the {n} training clips")
        self.total_steps = elo.epochs * self.steps_per_epoch
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=elo.lr, weight_decay=elo.weight_decay)
        # A network only distilled into RGB gets no gradient; DDP must be told some may be unused.
        self.ddp = data_parallel(self.model, self.device, find_unused_parameters=True)
        self.modules = {"model": self.model}
        self.optimizers = {"optimizer": self.optimizer}
        self.settings = {"elo": {k: v for k, v in to_dict(elo).items() if k != "epochs"}, "seed": cfg.seed,
                         "train": to_dict(cfg.train), "data": {k: list(v.shape) for k, v in self.data.items()}}
        self.nan_hint = f"lower elo.lr (now {elo.lr})"
        self.embed_dim = elo.embed_dim
        self.epoch = -1
        self.generator = torch.Generator()
        self.order = torch.zeros(0, dtype=torch.long)

    def _start_epoch(self, epoch: int) -> None:
        """Epoch ``epoch``'s generator (seeded with (seed, epoch)) and the clip order it draws first."""
        self.generator = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)
        self.order = torch.randperm(len(self.data["rgb"]), generator=self.generator)
        self.epoch = epoch

    def train_step(self, step: int, opt: Optimisation) -> StepOutput:
        epoch, i = divmod(step, self.steps_per_epoch)
        if epoch != self.epoch:
            self._start_epoch(epoch)
        size = self.cfg.elo.batch_size
        index = self.order[i * size : (i + 1) * size]
        batch = _augmented({k: v[index] for k, v in self.data.items()}, self.cfg, self.generator)
        local = size // self.world
        rows = slice(dist.rank() * local, (dist.rank() + 1) * local)
        with opt.autocast():
            out = self.ddp({k: v[rows].to(self.device) for k, v in batch.items()}, self.generator)
        opt.step(out["loss"], self.optimizer)
        return StepOutput({k: v.detach() for k, v in out.items()})

    def scheduled_values(self, step: int) -> dict[str, float]:
        return {"lr": self.cfg.elo.lr}

    @torch.no_grad()
    def epoch_metrics(self) -> dict[str, float]:
        """The collapse diagnostic of the RGB embeddings of the first clips, in evaluation mode."""
        self.model.eval()
        std = collapse_std(self.model.rgb(self.data["rgb"][:COLLAPSE_CLIPS].to(self.device)).embedding).item()
        self.model.train()
        return {"collapse_std": std}

    def extra_state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "generator": self.generator.get_state()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self._start_epoch(int(state["epoch"]))
        self.generator.set_state(state["generator"])


def elo_loop(cfg: Config, frames: np.ndarray, flow: np.ndarray | None = None, logmel: np.ndarray | None = None,
             checkpoint_dir: Path | None = None, progress: bool = True) -> Loop:
    """The loop of one ELo training, ready to :meth:`~selfsup.loop.Loop.try_resume` and fit."""
    task = EloTraining(cfg, frames, flow, logmel)
    task.model.train()
    opt = Optimisation(task.device, cfg.train.amp, cfg.train.amp_dtype, cfg.train.clip_grad_norm)
    return Loop(task, checkpoint_dir, cfg.train.checkpoint_every, cfg.train.log_every, opt, progress)


def train_elo(cfg: Config, frames: np.ndarray, flow: np.ndarray | None = None, logmel: np.ndarray | None = None,
              checkpoint_dir: Path | None = None, progress: bool = True) -> EloResult:
    """Train the ELo networks on unlabeled clips and return the RGB one (no MLflow run).

    ``frames`` uint8 (N, T, H, W, 3); ``flow`` float (N, T-1, H, W, 2) in pixels/frame; ``logmel``
    (N, n_mels, n_steps). Flow and log-mel are only needed when a weight uses them. With
    ``checkpoint_dir``, ``last.pt`` there is written every ``train.checkpoint_every`` steps and at the
    end, and resumed from when it belongs to these settings. A non-finite loss raises
    :class:`TrainingError`.
    """
    loop = elo_loop(cfg, frames, flow, logmel, checkpoint_dir, progress)
    loop.try_resume()
    history = loop.fit()
    loop.task.model.eval()
    return EloResult(loop.task.model.rgb, history.rows, loop.seconds)

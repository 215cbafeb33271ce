"""The training loop every model of the lab trains through, whatever one step of it is.

A :class:`TrainingTask` says what one step is: the SSL methods run one loss through one optimiser
(:mod:`selfsup.train`), ELo one weighted loss over several networks (:mod:`selfsup.elo.train`), a
GAN alternates discriminator and generator steps with two optimisers, a distillation run steps a
student next to a frozen teacher. :class:`Loop` owns everything around the step:

- mixed precision and gradient scaling and clipping (:class:`Optimisation`: one ``GradScaler``
  shared by every optimiser of a step, updated once per step, as torch's AMP recipe for several
  optimisers asks);
- checkpoints every ``train.checkpoint_every`` steps, written atomically with the task's modules,
  every optimiser, the scaler, every RNG state, the history and the MLflow run id; a run resumes
  only from a checkpoint of the same settings and code (:func:`~selfsup.checkpoint.fingerprint`),
  and then finishes with the weights an uninterrupted run gets (bit for bit on CPU);
- the NaN stop: a non-finite loss or non-finite weights raise :class:`TrainingError` before any
  checkpoint of them is written, naming the loss terms that went non-finite;
- a progress bar, per-step logging every ``train.log_every`` steps and per-epoch rows (mean of each
  loss term, the collapse diagnostic, the scheduled values: learning rate, EMA momentum, DINO's
  teacher temperature, ...) written to ``history.csv`` by the caller and to MLflow.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from selfsup import dist
from selfsup.checkpoint import (
    LAST,
    code_version,
    fingerprint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from selfsup.config.image import TrainConfig
from selfsup.errors import ConfigError, TrainingError
from selfsup.tracking import Tracker

log = logging.getLogger(__name__)


def pick_device(kind: str) -> str:
    """``train.device`` as a torch device kind: ``auto`` takes CUDA when one is visible."""
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device='cuda' but no CUDA device is visible; use 'auto' or 'cpu'")
    if kind == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return kind


def start_process(train: TrainConfig, seed: int, global_batch: int, batch_param: str) -> torch.device:
    """This process's device, joining the torchrun group when launched by it; sets ``train.threads`` and
    the seed. A global batch the processes cannot split evenly is refused, naming ``batch_param``."""
    device = dist.init(pick_device(train.device))
    if global_batch % dist.world_size():
        raise ConfigError(f"{batch_param}={global_batch} must be divisible by the {dist.world_size()} processes")
    if train.threads:
        torch.set_num_threads(train.threads)
    torch.manual_seed(seed)
    return device


def collapse_std(z: torch.Tensor) -> torch.Tensor:
    """Mean per-dimension std of l2-normalised embeddings: ~1/sqrt(d) when healthy, 0 when collapsed."""
    return F.normalize(z.float(), dim=1).std(0).mean()


@dataclass
class History:
    """Per-epoch records written to ``history.csv`` and the final summary."""

    rows: list[dict] = field(default_factory=list)

    def to_csv(self) -> str:
        if not self.rows:
            return ""
        keys = list(self.rows[0])
        lines = [",".join(keys)] + [",".join(f"{r[k]:.6g}" if isinstance(r[k], float) else str(r[k])
                                             for k in keys) for r in self.rows]
        return "\n".join(lines) + "\n"


@dataclass
class StepOutput:
    """What a step reports: ``losses["loss"]`` is the value the NaN stop watches and the progress bar
    shows, the other entries are logged terms (all detached); ``embedding`` (B, D), when given, feeds
    the per-epoch collapse diagnostic."""

    losses: dict[str, torch.Tensor]
    embedding: torch.Tensor | None = None


class Optimisation:
    """Autocast, gradient scaling and clipping for the optimiser steps inside one training step."""

    def __init__(self, device: torch.device, amp: bool, amp_dtype: str = "bfloat16", clip_norm: float = 0.0) -> None:
        self.amp = amp and device.type == "cuda"
        self.dtype = torch.bfloat16 if amp_dtype == "bfloat16" else torch.float16
        self.clip_norm = clip_norm
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.dtype == torch.float16)

    def autocast(self) -> contextlib.AbstractContextManager:
        """The forward pass's precision context: autocast on CUDA with ``train.amp``, else a no-op."""
        return torch.autocast("cuda", dtype=self.dtype) if self.amp else contextlib.nullcontext()

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer,
             before_step: Callable[[], None] | None = None) -> None:
        """Back-propagate ``loss`` and step ``optimizer``: zero its gradients, scale, unscale (so
        ``before_step`` hooks and clipping see true gradients), clip to ``clip_norm`` when above 0,
        step. Gradients other optimisers' parameters receive are left to their own step."""
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(optimizer)
        if before_step is not None:
            before_step()
        if self.clip_norm > 0:
            params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            nn.utils.clip_grad_norm_(params, self.clip_norm)
        self.scaler.step(optimizer)

    def end_step(self) -> None:
        """Once per training step, after every optimiser stepped: adapt the loss scale."""
        self.scaler.update()


class TrainingTask(ABC):
    """What the loop trains. Subclasses set the attributes below and implement :meth:`train_step`.

    - ``name``: shown on the progress bar;
    - ``modules``: every module whose weights and buffers the checkpoint keeps (by name);
    - ``optimizers``: every optimiser (by name), restored on resume;
    - ``device``, ``steps_per_epoch``, ``total_steps``;
    - ``settings``: the settings a checkpoint must share to be resumed (hashed with the code);
    - ``nan_hint``: what to change when the loss becomes non-finite (e.g. "lower `lr` (now 0.3)");
    - ``embed_dim``: the embedding size the collapse diagnostic is scaled by (0: unknown yet).
    """

    name: str = "train"
    modules: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    device: torch.device
    steps_per_epoch: int
    total_steps: int
    settings: dict[str, Any]
    nan_hint: str = "lower the learning rate"
    embed_dim: int = 0

    @abstractmethod
    def train_step(self, step: int, opt: Optimisation) -> StepOutput:
        """Run optimisation step ``step`` (0-based) with ``opt`` and report its losses."""

    def scheduled_values(self, step: int) -> dict[str, float]:
        """Values that follow a schedule at ``step`` (learning rates, EMA momentum, temperatures)."""
        return {}

    def epoch_metrics(self) -> dict[str, float]:
        """Diagnostics computed once at the end of each epoch (e.g. a collapse probe on fixed inputs)."""
        return {}

    def extra_state(self) -> dict[str, Any]:
        """State outside ``modules`` and ``optimizers`` that resuming needs (e.g. a data generator)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` returned."""
        if state:
            raise TrainingError(f"the checkpoint holds task state ({', '.join(state)}) this task does not keep")


class Loop:
    """Runs a :class:`TrainingTask` from its current step to the end, checkpointing as it goes.

    ``checkpoint_dir`` None trains without checkpoints (short search trials); the MLflow run of
    :meth:`attach_run`, when there is one, receives the step and epoch metrics.
    """

    def __init__(self, task: TrainingTask, checkpoint_dir: Path | None, checkpoint_every: int, log_every: int,
                 opt: Optimisation, progress: bool = True) -> None:
        self.task = task
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.checkpoint_every = checkpoint_every
        self.log_every = log_every
        self.opt = opt
        self.progress = progress
        self.tracker: Tracker | None = None
        self.fingerprint = fingerprint({**task.settings, "code": code_version()})
        self.step = 0
        self.history = History()
        self.run_id: str | None = None
        self.sums: dict[str, torch.Tensor] = {}  # per-epoch sums of the step terms, on the device
        self.seconds = 0.0                          # training time over every call, resumes included
        self.rng = rng_state()  # restored when fit() starts, so runs do not depend on what ran before

    # -- checkpoints -------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "step": self.step,
            "modules": {k: m.state_dict() for k, m in self.task.modules.items()},
            "optimizers": {k: o.state_dict() for k, o in self.task.optimizers.items()},
            "scaler": self.opt.scaler.state_dict(),
            "rng": rng_state(),
            "task": self.task.extra_state(),
            "history": self.history.rows,
            "sums": {k: v.cpu() for k, v in self.sums.items()},
            "run_id": self.run_id or "",
            "embed_dim": self.task.embed_dim,
            "seconds": self.seconds,
        }

    def save(self) -> None:
        if self.checkpoint_dir is not None and dist.is_main():
            save_checkpoint(self.checkpoint_dir / LAST, self.state())
        dist.barrier()

    def try_resume(self) -> bool:
        """Continue from ``last.pt`` if it exists and belongs to these settings and this code."""
        path = None if self.checkpoint_dir is None else self.checkpoint_dir / LAST
        if path is None or not path.is_file():
            return False
        state = load_checkpoint(path, map_location=self.task.device)
        if state.get("fingerprint") != self.fingerprint:
            log.warning("checkpoint %s belongs to a different config or version of the code; starting from scratch",
                        path)
            return False
        for k, module in self.task.modules.items():
            module.load_state_dict(state["modules"][k])
        for k, optimizer in self.task.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][k])
        self.opt.scaler.load_state_dict(state["scaler"])
        self.task.load_extra_state(state["task"])
        self.rng = state["rng"]
        self.step = int(state["step"])
        self.history.rows = list(state["history"])
        self.sums = {k: v.to(self.task.device) for k, v in state["sums"].items()}
        self.run_id = state["run_id"] or None
        self.task.embed_dim = int(state["embed_dim"])
        self.seconds = float(state["seconds"])
        log.info("resumed from %s at step %d/%d", path, self.step, self.task.total_steps)
        return True

    def attach_run(self, track: bool, tags: dict[str, str], default_name: str,
                   params: dict[str, Any]) -> Tracker | None:
        """The MLflow run this loop logs to: the checkpoint's run when a resumed loop has one this store
        holds, else a new run with ``tags`` (a ``run`` tag names it, else ``default_name``) and
        ``params``. None without tracking, and on every process but the main one."""
        if not track or not dist.is_main():
            return None
        tracker = Tracker.find(self.run_id, "the checkpoint's run; a new run is started") if self.run_id else None
        if tracker is None:
            tracker = Tracker.start(tags, run_name=tags.get("run"), default_name=default_name)
            tracker.log_params(params)
        else:
            log.info("continuing MLflow run %s", tracker.run_id)
        self.run_id = tracker.run_id
        self.tracker = tracker
        return tracker

    # -- the loop ----------------------------------------------------------------------------
    def fit(self, until: int | None = None) -> History:
        """Train from the current step to the end (or to step ``until``); returns the history."""
        task = self.task
        stop = task.total_steps if until is None else min(until, task.total_steps)
        set_rng_state(self.rng)
        bar = tqdm(total=task.total_steps, initial=self.step, desc=task.name,
                   disable=not (self.progress and dist.is_main()), dynamic_ncols=True, mininterval=1.0)
        start = time.perf_counter()
        epoch_start = start
        while self.step < stop:
            step = self.step
            out = task.train_step(step, self.opt)
            self.opt.end_step()
            self._accumulate(out)
            self.step = step + 1
            last = self.step == task.total_steps
            if self.step % self.log_every == 0 or self.step % self.checkpoint_every == 0 or last:
                self._log_step(step, out.losses, bar)
            bar.update(1)
            if self.step % task.steps_per_epoch == 0:
                now = time.perf_counter()
                self._end_epoch(now - epoch_start)
                epoch_start = now
            if self.step % self.checkpoint_every == 0 or last:
                self._check_finite()
                self.seconds += time.perf_counter() - start
                start = time.perf_counter()
                self.save()
        self.seconds += time.perf_counter() - start
        bar.close()
        self.rng = rng_state()
        return self.history

    def _accumulate(self, out: StepOutput) -> None:
        terms = {"loss": out.losses["loss"], **out.losses}  # the total first, then its terms
        if out.embedding is not None:
            terms["collapse_std"] = collapse_std(out.embedding)
            self.task.embed_dim = out.embedding.shape[1]
        for k, v in terms.items():
            v = v.detach().float()
            if k in self.sums:
                self.sums[k] += v
            else:
                self.sums[k] = v.clone()

    def _log_step(self, step: int, losses: dict[str, torch.Tensor], bar: tqdm) -> None:
        values = {k: dist.all_reduce_mean(v.detach().float()).item() for k, v in losses.items()}
        if not math.isfinite(values["loss"]):
            bad = ", ".join(k for k, v in values.items() if k != "loss" and not math.isfinite(v))
            raise TrainingError(f"the loss became {values['loss']} at step {step} (non-finite: "
                                f"{bad or 'the total'}); no checkpoint was written for it. Check the inputs for "
                                f"NaN/inf and {self.task.nan_hint}")
        bar.set_postfix(loss=f"{values['loss']:.4f}")
        if self.tracker is not None:
            self.tracker.log_metrics({**{f"train/{k}": v for k, v in values.items()},
                                      **{f"train/{k}": v for k, v in self.task.scheduled_values(step).items()}},
                                     step=self.step)

    def _end_epoch(self, seconds: float) -> None:
        steps = self.task.steps_per_epoch
        means = {k: v.item() for k, v in zip(self.sums, dist.all_reduce_mean(torch.stack(list(self.sums.values())))
                                             / steps, strict=True)}
        self.sums = {}
        diagnostics = {**({"collapse_std": means.pop("collapse_std")} if "collapse_std" in means else {}),
                       **self.task.epoch_metrics()}
        row: dict[str, Any] = {"epoch": self.step // steps, "step": self.step, **means, **diagnostics,
                               **self.task.scheduled_values(self.step - 1)}
        self.history.rows.append(row)
        if self.tracker is not None:  # scheduled values are logged with the steps
            metrics = {**{f"train/epoch_{k}": v for k, v in means.items()},
                       **{f"train/{k}": v for k, v in diagnostics.items()}, "train/epoch_seconds": seconds}
            if "collapse_std" in diagnostics and self.task.embed_dim:
                metrics["train/collapse_std_x_sqrt_d"] = diagnostics["collapse_std"] * math.sqrt(self.task.embed_dim)
            self.tracker.log_metrics(metrics, step=self.step)

    def _parameters(self) -> Iterator[torch.Tensor]:
        for module in self.task.modules.values():
            yield from module.parameters()

    def _check_finite(self) -> None:
        bad = torch.tensor(float(any(not torch.isfinite(p).all() for p in self._parameters())),
                           device=self.task.device)
        if dist.all_reduce_mean(bad).item() > 0:
            raise TrainingError(f"model weights are not finite at step {self.step}; the last good "
                                f"checkpoint is kept. Check the inputs for NaN/inf and {self.task.nan_hint}")

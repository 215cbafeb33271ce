"""The one pretraining loop: single process or DDP under torchrun, AMP, checkpoint and resume.

Data order is a permutation drawn from ``seed`` and the epoch, and every RNG state is saved in the
checkpoint, so a run interrupted at any point and resumed finishes with the same weights as an
uninterrupted one (on CPU, bit for bit).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from selfsup import dist
from selfsup.augment.background import BackgroundAugment, BackgroundBank
from selfsup.augment.views import ViewGenerator
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
from selfsup.data.store import images_tensor, load_meta, pretraining_images
from selfsup.errors import ConfigError, DataError, TrainingError
from selfsup.methods import DataInfo, Method, build_method
from selfsup.optim import build_optimizer
from selfsup.schedules import lr_schedule, scaled_lr

log = logging.getLogger(__name__)


def pick_device(kind: str) -> str:
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device='cuda' but no CUDA device is visible; use 'auto' or 'cpu'")
    if kind == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return kind


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


class Trainer:
    """Owns the model, optimiser, schedules and data of one pretraining run."""

    def __init__(self, cfg: Config, data_dir: Path, checkpoint_dir: Path, tracker=None,  # noqa: ANN001
                 backgrounds_dir: Path | None = None) -> None:
        self.cfg = cfg
        self.checkpoint_dir = Path(checkpoint_dir)
        self.tracker = tracker
        self.device = dist.init(pick_device(cfg.train.device))
        self.world = dist.world_size()
        if cfg.batch_size % self.world:
            raise ConfigError(f"batch_size={cfg.batch_size} must be divisible by the {self.world} processes")
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        torch.manual_seed(cfg.seed)

        meta = load_meta(data_dir)
        self.images = images_tensor(pretraining_images(data_dir))
        if self.device.type == "cuda":
            self.images = self.images.pin_memory()
        n = len(self.images)
        self.steps_per_epoch = n // cfg.batch_size
        if self.steps_per_epoch == 0:
            raise ConfigError(f"batch_size={cfg.batch_size} is larger than the {n} pretraining images")
        self.total_steps = cfg.epochs * self.steps_per_epoch
        self.info = DataInfo.from_meta(n, meta)
        method = build_method(cfg, self.info)  # refuses views the method cannot take (methods.check_views)
        background = self._background_augment(backgrounds_dir)
        self.views = ViewGenerator(cfg.views, meta["mean"], meta["std"], method.n_views, cfg.views.multi_crop.n_small,
                                   background,
                                   hard_negative=cfg.views.background.swaps > 0)
        if cfg.train.sync_bn and dist.is_distributed():
            if self.device.type != "cuda":
                raise ConfigError("train.sync_bn=true needs CUDA devices (torch's SyncBatchNorm has no CPU "
                                  "kernel); set -S train.sync_bn=false for CPU runs under torchrun")
            method = nn.SyncBatchNorm.convert_sync_batchnorm(method)
        self.method: Method = method.to(self.device)
        self.cuda = self.device.type == "cuda"
        if cfg.train.channels_last:
            self.method = self.method.to(memory_format=torch.channels_last)
        self.model = (nn.parallel.DistributedDataParallel(self.method, device_ids=[self.device] if self.cuda else None)
                      if dist.is_distributed() else self.method)

        lr = scaled_lr(cfg.lr, cfg.batch_size, cfg.optim.lr_scaling)
        warmup = int(round(cfg.optim.warmup_epochs * self.steps_per_epoch))
        self.lr_schedule = lr_schedule(lr, self.total_steps, warmup, cfg.optim)
        self.optimizer = build_optimizer(self.method, cfg.optim, lr)
        self.amp = self.cuda and cfg.train.amp
        self.amp_dtype = torch.bfloat16 if cfg.train.amp_dtype == "bfloat16" else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.amp_dtype == torch.float16)
        self.fingerprint = fingerprint({**cfg.to_dict(), "code": code_version()})
        self.step = 0
        self.history = History()
        self.run_id: str | None = None
        self.embed_dim = 0  # set by the first step, or restored with the checkpoint
        self.epoch_sums = torch.zeros(3, device=self.device)  # loss, collapse std, steps this epoch
        self.rng = rng_state()  # restored when fit() starts, so runs do not depend on what ran before

    def _background_augment(self, folder: Path | None) -> BackgroundAugment | None:
        """The background augmentation ``views.background`` asks for, with its bank, or None."""
        bg = self.cfg.views.background
        if not bg.enabled:
            return None
        if folder is None:
            raise ConfigError("views.background is on but no background bank was given; run the `backgrounds` "
                              "stage (pretrain --backgrounds data/backgrounds)")
        bank = BackgroundBank.load(folder)
        if bank is None:
            raise DataError(f"views.background is on but the bank at {folder} was built with it off; "
                            f"rerun `dvc repro backgrounds`")
        if bank.masks.shape != (len(self.images), *self.images.shape[2:]):
            raise DataError(f"the background bank at {folder} has masks {tuple(bank.masks.shape)} for "
                            f"{tuple(self.images.shape)} pretraining images; rerun `dvc repro segment backgrounds`")
        return BackgroundAugment(bg, bank)

    # -- checkpoints -------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "fingerprint": self.fingerprint,
            "step": self.step,
            "model": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            "history": self.history.rows,
            "epoch_sums": self.epoch_sums.cpu(),
            "run_id": self.run_id or "",
            "embed_dim": self.embed_dim,
        }

    def save(self) -> None:
        if dist.is_main():
            save_checkpoint(self.checkpoint_dir / LAST, self.state())
        dist.barrier()

    def try_resume(self) -> bool:
        """Continue from ``last.pt`` if it exists and belongs to this config."""
        path = self.checkpoint_dir / LAST
        if not path.is_file():
            return False
        state = load_checkpoint(path, map_location=self.device)
        if state.get("fingerprint") != self.fingerprint:
            log.warning("checkpoint %s belongs to a different config or version of the code; starting from scratch",
                        path)
            return False
        self.method.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.rng = state["rng"]
        self.step = int(state["step"])
        self.history.rows = list(state["history"])
        self.epoch_sums = state["epoch_sums"].to(self.device)
        self.run_id = state["run_id"] or None
        self.embed_dim = int(state["embed_dim"])
        log.info("resumed from %s at step %d/%d", path, self.step, self.total_steps)
        return True

    # -- the loop ----------------------------------------------------------------------------
    def batch_indices(self, step: int) -> torch.Tensor:
        """This rank's image indices for ``step``: a per-epoch permutation drawn from the seed."""
        epoch, i = divmod(step, self.steps_per_epoch)
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)
        perm = torch.randperm(len(self.images), generator=g)
        local = self.cfg.batch_size // self.world
        start = i * self.cfg.batch_size + dist.rank() * local
        return perm[start : start + local]

    def train_step(self, step: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        for group in self.optimizer.param_groups:
            group["lr"] = float(self.lr_schedule[step])
        index = self.batch_indices(step)
        views = self.views(self.images[index], self.device, index)
        if self.cfg.train.channels_last:
            views = views.map(lambda v: v.contiguous(memory_format=torch.channels_last))
        autocast = (torch.autocast("cuda", dtype=self.amp_dtype) if self.amp else contextlib.nullcontext())
        with autocast:
            out = self.model(views, index.to(self.device))
        loss = out.losses["loss"]
        self.embed_dim = out.embedding.shape[1]
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)  # hooks (clipping, freezing) see true gradients
        self.method.on_after_backward(step, self.total_steps)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.method.on_step_end(step, self.total_steps)
        return loss.detach(), collapse_std(out.embedding), {k: v.detach() for k, v in out.losses.items()}

    def fit(self, until: int | None = None) -> History:
        """Train from the current step to the end (or to step ``until``), checkpointing as it goes."""
        cfg = self.cfg
        stop = self.total_steps if until is None else min(until, self.total_steps)
        set_rng_state(self.rng)
        bar = tqdm(total=self.total_steps, initial=self.step, desc=f"pretrain {cfg.method}",
                   disable=not dist.is_main(), dynamic_ncols=True, mininterval=1.0)
        start = time.perf_counter()
        while self.step < stop:
            step = self.step
            loss, std, terms = self.train_step(step)
            self.epoch_sums += torch.stack([loss.float(), std, torch.ones_like(std)])
            self.step = step + 1
            if self.step % cfg.train.log_every == 0 or self.step == self.total_steps:
                value = dist.all_reduce_mean(loss).item()
                if not math.isfinite(value):
                    raise TrainingError(
                        f"loss became {value} at step {step}; no checkpoint was written for it. "
                        f"Lower `lr` (now {cfg.lr}) or check the method's knobs")
                bar.set_postfix(loss=f"{value:.4f}")
                if self.tracker is not None:
                    self.tracker.log_metrics({"train/loss": value, "train/lr": float(self.lr_schedule[step]),
                                              **{f"train/{k}": dist.all_reduce_mean(v).item()
                                                 for k, v in terms.items() if k != "loss"}}, step=self.step)
            bar.update(1)
            if self.step % self.steps_per_epoch == 0:
                self._end_epoch(self.epoch_sums[:2] / self.epoch_sums[2], time.perf_counter() - start)
                start = time.perf_counter()
                self.epoch_sums.zero_()
            if self.step % cfg.train.checkpoint_every == 0 or self.step == self.total_steps:
                self._check_finite()
                self.save()
        bar.close()
        self.rng = rng_state()
        return self.history

    def _end_epoch(self, means: torch.Tensor, elapsed: float) -> None:
        loss, std = dist.all_reduce_mean(means).tolist()
        epoch = self.step // self.steps_per_epoch
        row = {"epoch": epoch, "step": self.step, "loss": loss, "collapse_std": std,
               "lr": float(self.lr_schedule[self.step - 1])}
        self.history.rows.append(row)
        if self.tracker is not None:
            self.tracker.log_metrics({"train/epoch_loss": loss, "train/collapse_std": std,
                                      "train/collapse_std_x_sqrt_d": std * math.sqrt(self.embed_dim),
                                      "train/epoch_seconds": elapsed}, step=self.step)

    def _check_finite(self) -> None:
        bad = torch.tensor(float(any(not torch.isfinite(p).all() for p in self.method.parameters())),
                           device=self.device)
        if dist.all_reduce_mean(bad).item() > 0:
            raise TrainingError(f"model weights are not finite at step {self.step}; the last good "
                                f"checkpoint is kept. Lower `lr` (now {self.cfg.lr})")

"""Assembly of an image pretraining run: device, DDP, data, views, background bank, method, optimiser.

:class:`ImagePretraining` is the :class:`~selfsup.loop.TrainingTask` of the SSL methods: one loss,
one optimiser whose groups take the learning rate and weight decay of :mod:`selfsup.schedules`
before each step (:func:`selfsup.optim.set_hyperparameters`); the generic
:class:`~selfsup.loop.Loop` runs it (AMP, checkpoint and resume, NaN stop, logging). Data order is
a permutation drawn from ``seed`` and the epoch, and every RNG state is saved in the checkpoint, so
a run interrupted at any point and resumed finishes with the same weights as an uninterrupted one
(on CPU, bit for bit). Under torchrun each process takes its slice of the global batch.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from selfsup import dist
from selfsup.augment.background import BackgroundAugment, BackgroundBank
from selfsup.augment.views import ViewGenerator
from selfsup.config import Config
from selfsup.data.store import images_tensor, load_meta, pretraining_images
from selfsup.errors import ConfigError, DataError
from selfsup.loop import Loop, Optimisation, StepOutput, TrainingTask, start_process
from selfsup.methods import DataInfo, Method, build_method
from selfsup.optim import build_optimizer, set_hyperparameters
from selfsup.parallel import data_parallel, global_batch_norm
from selfsup.schedules import lr_schedule, scaled_lr, weight_decay_schedule

log = logging.getLogger(__name__)


class ImagePretraining(TrainingTask):
    """One SSL method pretraining on the prepared images of ``data_dir``."""

    def __init__(self, cfg: Config, data_dir: Path, backgrounds_dir: Path | None = None) -> None:
        self.cfg = cfg
        self.name = f"pretrain {cfg.method}"
        self.device = start_process(cfg.train, cfg.seed, cfg.batch_size, "batch_size")
        self.world = dist.world_size()

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
        if cfg.train.sync_bn:
            method = global_batch_norm(method, self.device)
        self.method: Method = method.to(self.device)
        if cfg.train.channels_last:
            self.method = self.method.to(memory_format=torch.channels_last)
        self.model = data_parallel(self.method, self.device)

        self.peak_lr = scaled_lr(cfg.lr, cfg.batch_size, cfg.optim.lr_scaling)
        warmup = int(round(cfg.optim.warmup_epochs * self.steps_per_epoch))
        self.lr_schedule = lr_schedule(self.peak_lr, self.total_steps, warmup, cfg.optim)
        self.weight_decay_schedule = weight_decay_schedule(self.total_steps, cfg.optim)
        self.optimizer = build_optimizer(self.method, cfg.optim, self.peak_lr, self.method.fixed_lr_modules())
        self.modules = {"model": self.method}
        self.optimizers = {"optimizer": self.optimizer}
        self.settings = cfg.to_dict()
        self.nan_hint = f"lower `lr` (now {cfg.lr}) or check the method's knobs"

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

    def batch_indices(self, step: int) -> torch.Tensor:
        """This rank's image indices for ``step``: a per-epoch permutation drawn from the seed."""
        epoch, i = divmod(step, self.steps_per_epoch)
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)
        perm = torch.randperm(len(self.images), generator=g)
        local = self.cfg.batch_size // self.world
        start = i * self.cfg.batch_size + dist.rank() * local
        return perm[start : start + local]

    def train_step(self, step: int, opt: Optimisation) -> StepOutput:
        set_hyperparameters(self.optimizer, float(self.lr_schedule[step]), self.peak_lr,
                            float(self.weight_decay_schedule[step]))
        index = self.batch_indices(step)
        views = self.views(self.images[index], self.device, index)
        if self.cfg.train.channels_last:
            views = views.map(lambda v: v.contiguous(memory_format=torch.channels_last))
        with opt.autocast():
            out = self.model(views, index.to(self.device))
        opt.step(out.losses["loss"], self.optimizer,
                 before_step=lambda: self.method.on_after_backward(step, self.total_steps))
        self.method.on_step_end(step, self.total_steps)
        return StepOutput({k: v.detach() for k, v in out.losses.items()}, out.embedding)

    def scheduled_values(self, step: int) -> dict[str, float]:
        """The learning rate, a scheduled weight decay and the method's own schedules (EMA momentum,
        teacher temperature) at ``step``."""
        values = {"lr": float(self.lr_schedule[step])}
        if self.cfg.optim.weight_decay_end is not None:
            values["weight_decay"] = float(self.weight_decay_schedule[step])
        return {**values, **self.method.scheduled_values(step, self.total_steps)}


def image_loop(cfg: Config, data_dir: Path, checkpoint_dir: Path | None, backgrounds_dir: Path | None = None,
               progress: bool = True) -> Loop:
    """The loop of one image pretraining run, ready to :meth:`~selfsup.loop.Loop.try_resume` and fit."""
    task = ImagePretraining(cfg, data_dir, backgrounds_dir)
    opt = Optimisation(task.device, cfg.train.amp, cfg.train.amp_dtype, cfg.train.clip_grad_norm)
    return Loop(task, checkpoint_dir, cfg.train.checkpoint_every, cfg.train.log_every, opt, progress)

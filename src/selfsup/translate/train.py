"""Stage ``translate``'s work: train one translation method in the lab's loop and write its outputs.

Each step draws a batch of domain A and a batch of domain B (a function of the step alone, so a
resumed run draws the same ones), takes one Adam step of the discriminator(s) on the detached
translations and one of the generator(s) and heads with the discriminators frozen, as the official
CUT and CycleGAN code do. The rate stays constant, then decays linearly to 0 over the last
``decay_fraction`` of the steps. Every ``sample_every`` steps a grid of the same test images (input
over translation over ground truth) is drawn and logged to the run's MLflow record under ``samples/``.

Outputs: ``model.pt`` (every network, with the resolved config), ``run.json`` (the MLflow run);
``metrics.json`` (final losses, seconds per step, peak memory, parameter counts), ``history.csv``
(100-step means of every loss term) and ``samples/step_<n>.png``.
"""

from __future__ import annotations

import contextlib
import io
import resource
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.utils import save_image

from selfsup.config import Config
from selfsup.config.translate import TranslateConfig
from selfsup.io import atomic_write, atomic_write_text, write_json
from selfsup.loop import Loop, Optimisation, StepOutput, TrainingTask, start_process
from selfsup.model_file import save_model_file
from selfsup.params import save_config
from selfsup.stage_config import stage_params
from selfsup.translate.domains import Domains, build_domains
from selfsup.translate.objectives import Translator

HISTORY_STEPS = 100  # steps per history row


def linear_decay(lr: float, steps: int, decay_fraction: float) -> np.ndarray:
    """The papers' schedule: ``lr`` for the first ``1 - decay_fraction`` of the steps, then linearly to 0."""
    start = int(round(steps * (1 - decay_fraction)))
    t = np.arange(steps, dtype=np.float64)
    return lr * np.where(t < start, 1.0, 1.0 - (t - start + 1) / (steps - start + 1))


class TranslationTask(TrainingTask):
    """One translation method's networks, optimisers and data, stepped by :class:`~selfsup.loop.Loop`."""

    def __init__(self, cfg: Config, domains: Domains, device: torch.device, settings: dict[str, Any]) -> None:
        t = cfg.translate
        self.cfg, self.t, self.domains, self.device = cfg, t, domains, device
        self.name = f"translate {t.method}"
        self.model = Translator(t).to(device).train()
        self.modules = {"translator": self.model}
        betas = (t.beta1, t.beta2)
        self.g_opt = torch.optim.Adam(self.model.generator_parameters(), lr=t.lr, betas=betas)
        self.d_opt = torch.optim.Adam(self.model.discriminator_parameters(), lr=t.lr, betas=betas)
        self.optimizers = {"generator": self.g_opt, "discriminator": self.d_opt}
        self.lrs = linear_decay(t.lr, t.steps, t.decay_fraction)
        self.total_steps = t.steps
        self.steps_per_epoch = min(HISTORY_STEPS, t.steps)
        self.settings = settings
        self.nan_hint = f"lower `translate.lr` (now {t.lr})"

    def _batch(self, images: torch.Tensor, step: int, stream: int) -> torch.Tensor:
        """``batch_size`` random images (a function of the seed, the step and the domain alone), float [0, 1]."""
        g = torch.Generator().manual_seed((self.cfg.seed * 1_000_003 + step) * 2 + stream)
        return images[torch.randint(len(images), (self.t.batch_size,), generator=g)].to(self.device).float() / 255

    def train_step(self, step: int, opt: Optimisation) -> StepOutput:
        for o in self.optimizers.values():
            for group in o.param_groups:
                group["lr"] = float(self.lrs[step])
        a = self._batch(self.domains.a_train, step, 0)
        b = self._batch(self.domains.b_train, step, 1)
        with opt.autocast():
            fakes = self.model.fakes(a, b, self.cfg.seed, step)
            d_terms = self.model.discriminator_loss(fakes)
        opt.step(d_terms["loss"], self.d_opt)
        for d in self.model.discriminators():
            d.requires_grad_(False)
        with opt.autocast():
            g_terms = self.model.generator_loss(fakes, self.cfg.seed, step)
        opt.step(g_terms["loss"], self.g_opt)
        for d in self.model.discriminators():
            d.requires_grad_(True)
        losses = {"loss": g_terms.pop("loss").detach(), "d_loss": d_terms.pop("loss").detach(),
                  **{k: v.detach() for k, v in {**g_terms, **d_terms}.items()}}
        return StepOutput(losses)

    def scheduled_values(self, step: int) -> dict[str, float]:
        return {"lr": float(self.lrs[min(step, self.total_steps - 1)])}


def sample_panel(model: Translator, domains: Domains, n: int) -> torch.Tensor:
    """The first ``n`` test images, their translations and their ground truths: (3 n, 3, H, W) in [0, 1]."""
    a = domains.a_test[:n].float() / 255
    return torch.cat([a, model.translate(domains.a_test[:n]), domains.b_test[:n].float() / 255])


def save_panel(images: torch.Tensor, path: Path, nrow: int) -> Path:
    """A grid of images in [0, 1] as a PNG, written atomically."""
    buf = io.BytesIO()
    save_image(images.clamp(0, 1), buf, nrow=nrow, padding=1, pad_value=1.0, format="png")
    atomic_write(Path(path), lambda f: f.write(buf.getvalue()))
    return Path(path)


def _parameters(module: torch.nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def _grid(task: TranslationTask, samples: Path, step: int) -> Path | None:
    """The sample grid of ``step``, drawn unless it exists (a resumed run keeps the grids it drew)."""
    path = samples / f"step_{step:06d}.png"
    if path.is_file():
        return None
    n = task.t.eval_panel
    return save_panel(sample_panel(task.model, task.domains, n), path, nrow=min(n, len(task.domains.a_test)))


def _metrics(loop: Loop, task: TranslationTask) -> dict:
    t, model, history = task.t, task.model, loop.history.rows
    last = history[-1] if history else {}
    return {
        "method": t.method, "steps": t.steps, "batch_size": t.batch_size,
        "seconds": loop.seconds, "seconds_per_step": loop.seconds / t.steps,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "parameters_generators": _parameters(model.g_ab) + _parameters(getattr(model, "g_ba", None)),
        "parameters_discriminators": sum(_parameters(d) for d in model.discriminators()),
        "parameters_heads": sum(_parameters(getattr(model, h, None)) for h in ("head_1", "head_2")),
        "domains": task.domains.describe(),
        **{f"final_{k}": v for k, v in last.items() if k not in ("epoch", "step")},
    }


def run_translate(cfg: Config, data_dir: Path, out_dir: Path, checkpoint_dir: Path, track: bool = True,
                  tags: dict[str, str] | None = None, progress: bool = True, model_dir: Path | None = None) -> dict:
    """Train ``cfg.translate`` (resuming from ``checkpoint_dir``), write the outputs, return the metrics."""
    t: TranslateConfig = cfg.translate
    device = start_process(cfg.train, cfg.seed, t.batch_size, "translate.batch_size")
    domains = build_domains(data_dir, t.split_seed)
    settings = {"stage": "translate", "params": stage_params(cfg, "translate"), "domains": domains.describe()}
    task = TranslationTask(cfg, domains, device, settings)
    loop = Loop(task, Path(checkpoint_dir), t.checkpoint_every, 10, Optimisation(device, amp=False), progress)
    loop.try_resume()
    tracker = loop.attach_run(track, {"stage": "translate", "method": t.method, **(tags or {})},
                              f"translate-{t.method}-{t.steps}steps",
                              {k: v for k, v in cfg.flat().items() if k.split(".")[0] in ("translate", "seed")})
    samples = Path(checkpoint_dir) / "samples"  # kept with the checkpoints, so a resumed run keeps earlier grids
    with tracker.failing_on_error() if tracker else contextlib.nullcontext():
        while True:
            if loop.step > 0 and (loop.step % t.sample_every == 0 or loop.step == t.steps):
                grid = _grid(task, samples, loop.step)
                if grid is not None and tracker:
                    tracker.log_artifact(grid, "samples")
            if loop.step >= t.steps:
                break
            loop.fit(until=(loop.step // t.sample_every + 1) * t.sample_every)
        out_dir, model_dir = Path(out_dir), Path(model_dir or out_dir)
        metrics = _metrics(loop, task)
        save_model_file(model_dir / "model.pt", cfg, {k: v.cpu() for k, v in task.model.state_dict().items()},
                        stage="translate")
        shutil.rmtree(out_dir / "samples", ignore_errors=True)
        shutil.copytree(samples, out_dir / "samples")
        atomic_write_text(out_dir / "history.csv", loop.history.to_csv())
        write_json(out_dir / "metrics.json", metrics)
        save_config(cfg, out_dir / "config.yaml")
        write_json(model_dir / "run.json", {"run_id": loop.run_id or "", "tracking": bool(tracker)})
        if tracker:
            tracker.log_metrics({f"translate/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))},
                                step=loop.step)
            tracker.log_artifact(out_dir / "history.csv")
            tracker.finish()
    return metrics

"""The ``pretrain`` stage's library function: train through the loop, then write the model, curves and run id.

Outputs (see :mod:`selfsup.run_outputs`): ``model.pt`` (the method's weights and state, and the config
that built it), ``history.csv`` (per epoch: the loss and its terms, the collapse diagnostic and the
scheduled values; a DVC plot), ``loss.png``, ``metrics.json`` (final loss and collapse diagnostic),
``config.yaml`` (the resolved config) and ``run.json`` (the MLflow run that ``evaluate`` continues).
The checkpoint lives in ``checkpoint_dir`` (scratch state, in neither git nor DVC), so a killed run
resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import logging
import math
from pathlib import Path
from typing import Any

from selfsup import dist
from selfsup.config import Config
from selfsup.methods import Method
from selfsup.model_file import save_model_file
from selfsup.run_outputs import write_run_outputs
from selfsup.train import image_loop

log = logging.getLogger(__name__)


def run_tags(cfg: Config, stage: str) -> dict[str, str]:
    return {"method": cfg.method, "dataset": cfg.dataset, "preset": cfg.preset,
            "backbone": cfg.backbone.name, "stage": stage}


def save_model(path: Path, method: Method, cfg: Config) -> None:
    """Everything evaluation needs to rebuild the trained method: config, data facts, weights."""
    info = method.info
    save_model_file(path, cfg, method.state_dict(), view_size=cfg.views.size,
                    info={"n_images": info.n_images, "mean": list(info.mean), "std": list(info.std)})


VIDEO_SECTIONS = ("video", "elo", "zipf", "search")


def image_params(cfg: Config) -> dict[str, Any]:
    """The resolved config an image run logs to MLflow: everything but the video branch's sections,
    so the compare view lines runs up on the knobs that shaped them."""
    return {k: v for k, v in cfg.flat().items() if k.split(".")[0] not in VIDEO_SECTIONS}


def pretrain(cfg: Config, data_dir: Path, out_dir: Path, checkpoint_dir: Path, track: bool = True,
             backgrounds_dir: Path | None = None, tags: dict[str, str] | None = None,
             model_dir: Path | None = None) -> dict:
    """Pretrain ``cfg.method`` on the prepared dataset; returns the final metrics.

    The records (``metrics.json``, ``history.csv``, ``config.yaml``) go to ``out_dir``; the model, its
    MLflow run id and its loss plot (``model.pt``, ``run.json``, ``loss.png``) to ``model_dir``, which
    defaults to ``out_dir``: a pipeline can keep small records in git and the rest in the DVC cache.

    ``backgrounds_dir`` is the ``backgrounds`` stage's bank, read when ``views.background`` is on;
    ``tags`` are added to the MLflow run's (e.g. ``figure`` for runs of the paper pipeline); a ``run``
    tag also names the MLflow run, so the compare view shows ``barlow-lambda0.05``, not a random name.
    """
    out_dir = Path(out_dir)
    model_dir = out_dir if model_dir is None else Path(model_dir)
    loop = image_loop(cfg, data_dir, checkpoint_dir, backgrounds_dir=backgrounds_dir)
    loop.try_resume()
    tags = {**run_tags(cfg, "pretrain"), **(tags or {})}
    tracker = loop.attach_run(track, tags, f"{cfg.method}-{cfg.dataset}-{cfg.epochs}ep", image_params(cfg))
    with tracker.failing_on_error() if tracker else contextlib.nullcontext():
        history = loop.fit()
        last = history.rows[-1] if history.rows else {}
        metrics = {"loss": last.get("loss", math.nan), "collapse_std": last.get("collapse_std", math.nan),
                   "collapse_std_x_sqrt_d": last.get("collapse_std", math.nan) * math.sqrt(loop.task.embed_dim),
                   "steps": loop.step, "epochs": cfg.epochs}
        write_run_outputs(loop, tracker, cfg, metrics, f"{cfg.method} on {cfg.dataset}", out_dir, model_dir,
                          model_dir / "model.pt", lambda path: save_model(path, loop.task.method, cfg))
    dist.shutdown()
    return metrics

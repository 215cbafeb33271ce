"""Run under `torchrun --nproc_per_node=2`: the first ELo training step through its task (each rank
takes its rows of the global batch, draws the global batch's augmentation and task labels and keeps
its own, contrasts against every rank's clips), saved by rank 0 for tests/test_dist.py to compare
with one process: the loss terms averaged over ranks and the DDP-averaged gradients."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist_

from selfsup import dist
from selfsup.config import Config
from selfsup.elo.train import EloTraining
from selfsup.loop import Optimisation
from selfsup.schema import build


def main(inputs: Path, out: Path) -> None:
    given = torch.load(inputs, weights_only=False)
    task = EloTraining(build(Config, given["config"]), given["frames"], given["flow"], given["logmel"])
    losses = task.train_step(0, Optimisation(task.device, amp=False)).losses
    grads = {k: p.grad.clone() for k, p in task.model.named_parameters() if p.grad is not None}
    mean = {k: dist.all_reduce_mean(v) for k, v in losses.items()}
    if dist.rank() == 0:
        torch.save({"losses": mean, "grads": grads, "world": dist_.get_world_size()}, out)
    dist.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))

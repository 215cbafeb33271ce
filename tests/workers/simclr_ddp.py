"""Run under `torchrun --nproc_per_node=2`: SimCLR loss and DDP-averaged gradients on this rank's
half of a fixed batch, saved by rank 0 for tests/test_dist.py to compare with one process."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist_
from torch import nn

from selfsup import dist
from selfsup.config import load_config
from selfsup.methods import build_method


def main(params: Path, out: Path) -> None:
    device = dist.init("cpu")
    cfg = load_config(params)
    torch.manual_seed(0)
    method = build_method(cfg).to(device)
    views = torch.load(out.parent / "views.pt", weights_only=True)
    n = views[0].shape[0] // dist.world_size()
    mine = [v[dist.rank() * n : (dist.rank() + 1) * n] for v in views]
    model = nn.parallel.DistributedDataParallel(method)
    loss = model(mine).losses["loss"]
    loss.backward()
    mean_loss = dist.all_reduce_mean(loss)
    if dist.rank() == 0:
        grads = {k: p.grad for k, p in method.named_parameters()}
        torch.save({"loss": mean_loss, "grads": grads, "world": dist_.get_world_size()}, out)
    dist.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))

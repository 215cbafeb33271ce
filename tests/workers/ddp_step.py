"""Run under `torchrun --nproc_per_node=2`: one training step of a method on this rank's half of a
fixed batch (loss, DDP-averaged gradients, then the optimiser step and the method's step-end
hook), saved by rank 0 for tests/test_dist.py to compare with one process."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist_
from torch import nn

from selfsup import dist
from selfsup.methods import DataInfo, Views, build_method
from selfsup.params import load_config


def main(params: Path, out: Path) -> None:
    device = dist.init("cpu")
    cfg = load_config(params)
    batch = torch.load(out.parent / "views.pt", weights_only=True)
    views, index = Views(batch["large"], batch["small"]), batch["index"]
    torch.manual_seed(0)
    method = build_method(cfg, DataInfo(n_images=batch["n_images"])).to(device)
    n = index.shape[0] // dist.world_size()
    mine = slice(dist.rank() * n, (dist.rank() + 1) * n)
    model = nn.parallel.DistributedDataParallel(method)
    loss = model(views.map(lambda v: v[mine]), index[mine]).losses["loss"]
    loss.backward()
    grads = {k: p.grad.clone() for k, p in method.named_parameters() if p.grad is not None}
    torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.1).step()
    method.on_step_end(0, 10)
    mean_loss = dist.all_reduce_mean(loss.detach())
    if dist.rank() == 0:
        torch.save({"loss": mean_loss, "grads": grads, "world": dist_.get_world_size(),
                    "state": method.state_dict()}, out)
    dist.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))

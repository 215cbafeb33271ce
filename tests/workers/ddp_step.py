"""Run under `torchrun --nproc_per_node=2`: one training step of a method on this rank's half of a
fixed batch (loss, DDP-averaged gradients, then the optimiser step and the method's step-end
hook), saved by every rank for tests/test_dist.py to compare with one process and across ranks.

The method is wrapped as training wraps it: global BatchNorm when ``train.sync_bn`` is set, DDP
without buffer broadcasts."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist_

from selfsup import dist
from selfsup.methods import DataInfo, Views, build_method
from selfsup.parallel import data_parallel, global_batch_norm
from selfsup.params import load_config


def main(params: Path, out: Path) -> None:
    device = dist.init("cpu")
    cfg = load_config(params)
    batch = torch.load(out.parent / "views.pt", weights_only=True)
    views, index = Views(batch["large"], batch["small"]), batch["index"]
    torch.manual_seed(0)
    method = build_method(cfg, DataInfo(n_images=batch["n_images"]))
    if cfg.train.sync_bn:
        method = global_batch_norm(method, device)
    method = method.to(device)
    n = index.shape[0] // dist.world_size()
    mine = slice(dist.rank() * n, (dist.rank() + 1) * n)
    model = data_parallel(method, device)
    loss = model(views.map(lambda v: v[mine]), index[mine]).losses["loss"]
    loss.backward()
    grads = {k: p.grad.clone() for k, p in method.named_parameters() if p.grad is not None}
    torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.1).step()
    method.on_step_end(0, 10)
    mean_loss = dist.all_reduce_mean(loss.detach())
    torch.save({"loss": mean_loss, "grads": grads, "world": dist_.get_world_size(), "state": method.state_dict(),
                "broadcast_buffers": model.broadcast_buffers},
               out if dist.rank() == 0 else out.with_suffix(f".rank{dist.rank()}.pt"))
    dist.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))

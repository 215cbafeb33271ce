"""Data parallelism under torchrun: global BatchNorm and DDP without buffer broadcasts.

**Global BatchNorm.** SimCLR ("Global BN", Sec. 2.3), SimCLR v2, BYOL, SwAV, SimSiam, Barlow Twins,
MoCo v3 and DINO (for networks with BatchNorm) compute BatchNorm statistics over the global batch:
with per-device statistics a contrastive model can tell which device a sample sits on and
"cheat" (SimCLR Sec. 2.3), and a small per-device batch gives noisy statistics. ``train.sync_bn``
turns it on (those methods' paper defaults do). On CUDA the layers become ``nn.SyncBatchNorm``; on
CPU, where torch's SyncBatchNorm has no kernel, they become :class:`GlobalBatchNorm`, which
all-reduces the sums and squared deviations with autograd-aware collectives, so the forward, the
backward and the running statistics equal one process's BatchNorm over the whole batch.

MoCo v1/v2 are the opposite: Shuffling BN (He et al. 2020, Sec. 3.3) relies on per-device
statistics of a shuffled key batch, so ``sync_bn`` with them is refused
(:func:`selfsup.methods.check_batch_norm`).

**Buffers.** DDP re-sends every buffer from rank 0 before each forward by default
(``broadcast_buffers``): memory banks, queues and centres of hundreds of MB at ImageNet scale.
Every method keeps such state identical on all ranks with its own gathers (memory banks and queues
all-gather the global batch's rows, DINO's centre and InstDisc's Z are all-reduced), so the
broadcast is off; BatchNorm running statistics stay per rank unless BatchNorm is global.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from selfsup import dist


class GlobalBatchNorm(_BatchNorm):
    """BatchNorm whose batch statistics span every process of the group (any backend, incl. gloo)."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least a 2-D input (N, C, ...), got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch_stats = self.training or not self.track_running_stats
        if not (batch_stats and dist.is_distributed()):
            return super().forward(x)
        self._check_input_dim(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        xf = x.float()
        count = dist.all_reduce_sum_with_grad(torch.tensor([xf.numel() / xf.shape[1]], device=x.device))
        mean = dist.all_reduce_sum_with_grad(xf.sum(dims)) / count
        centred = xf - mean.view(shape)
        var = dist.all_reduce_sum_with_grad(centred.pow(2).sum(dims)) / count
        if self.training and self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), float(count))
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, n: float) -> None:
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
        unbiased = var * n / max(n - 1.0, 1.0)
        self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)


def convert_global_bn(module: nn.Module) -> nn.Module:
    """``module`` with every BatchNorm layer replaced by a :class:`GlobalBatchNorm` holding the same
    parameters and statistics (in place below the root; the root itself is returned replaced)."""
    if isinstance(module, _BatchNorm) and not isinstance(module, GlobalBatchNorm):
        out = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        out.load_state_dict(module.state_dict())
        out.train(module.training)
        if module.affine:
            out.weight.requires_grad_(module.weight.requires_grad)
            out.bias.requires_grad_(module.bias.requires_grad)
        return out
    for name, child in module.named_children():
        module.add_module(name, convert_global_bn(child))
    return module


def global_batch_norm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm of ``module`` made global across the process group (a no-op in one process)."""
    if not dist.is_distributed():
        return module
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return convert_global_bn(module)


def data_parallel(module: nn.Module, device: torch.device, find_unused_parameters: bool = False) -> nn.Module:
    """``module`` under DDP when torchrun started this process (without buffer broadcasts), else itself."""
    if not dist.is_distributed():
        return module
    ddp = nn.parallel.DistributedDataParallel
    # newer torch names the per-forward buffer broadcast ``forward_sync_buffers``, older ``broadcast_buffers``
    no_broadcast = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(ddp).parameters
                    else {"broadcast_buffers": False})
    return ddp(module, device_ids=[device] if device.type == "cuda" else None,
               find_unused_parameters=find_unused_parameters, **no_broadcast)

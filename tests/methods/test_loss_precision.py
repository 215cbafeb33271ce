"""Every loss is computed in float32 under mixed precision.

``.float()`` inside an autocast region does not stop low-precision matrix multiplies: autocast casts
the operands of ``mm`` back to bf16 / fp16. Networks (the sub-modules of a method) may run in low
precision; the loss, computed in the method's own ``forward`` from their outputs, must not. This
test runs one training step of every method under CPU bf16 autocast and records, with a dispatch
mode, every operation executed in the method's ``forward`` outside its sub-modules: none of them
may compute a bf16 result (moving, slicing, concatenating or casting bf16 tensors is allowed).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from conftest import TINY_RUN, write_params
from selfsup.methods import REGISTRY, DataInfo, Views, build_method
from selfsup.params import load_config

B = 8

# operations that move, reinterpret or cast values without computing new ones
LOSSLESS = {
    "_to_copy", "copy_", "clone", "detach", "alias", "view", "_unsafe_view", "reshape", "expand", "permute",
    "t", "transpose", "slice", "select", "split", "split_with_sizes", "unbind", "chunk", "cat", "stack",
    "index", "index_select", "gather", "roll", "flip", "squeeze", "unsqueeze", "as_strided", "empty_like",
    "zeros_like", "ones_like", "new_empty", "new_zeros", "lift_fresh", "_reshape_alias", "unfold", "contiguous",
    "narrow", "repeat", "flatten", "index_put_", "masked_select", "rot90",
}


class LowPrecisionOps(TorchDispatchMode):
    """Names of the bf16-producing computations run at depth ``depth`` of the module call stack."""

    def __init__(self, depth: list[int]) -> None:
        super().__init__()
        self.depth = depth
        self.found: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        outs = out if isinstance(out, (tuple, list)) else [out]
        if (self.depth[0] == 1 and name not in LOSSLESS
                and any(isinstance(o, torch.Tensor) and o.dtype == torch.bfloat16 for o in outs)):
            self.found.append(name)
        return out


def _views(n_views: int, n_small: int) -> Views:
    g = torch.Generator().manual_seed(1)
    return Views([torch.randn(B, 3, 16, 16, generator=g) for _ in range(n_views)],
                 [torch.randn(B, 3, 8, 8, generator=g) for _ in range(n_small)])


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_the_loss_is_float32_under_bf16_autocast(project: Path, name: str) -> None:
    small = {"multi_crop": {"n_small": 2, "size": 8}} if name in ("swav", "dino") else {}
    params = {**TINY_RUN, "batch_size": B, "views": {"size": 16, **small}}
    params.update({"swav": {"queue_start_epoch": 0}, "cpc": {"prediction_steps": 1},
                   "moco": {"shuffle_bn_splits": 2}, "mocov1": {"shuffle_bn_splits": 2}}.get(name, {}))
    cfg = load_config(write_params(project, method=name, **params))
    torch.manual_seed(0)
    method = build_method(cfg, DataInfo(64)).train()
    views = _views(method.n_views, cfg.views.multi_crop.n_small)
    index = torch.randperm(64, generator=torch.Generator().manual_seed(2))[:B]

    depth = [0]

    def enter(module, args):  # noqa: ANN001, ANN202
        depth[0] += 1

    def leave(module, args, out):  # noqa: ANN001, ANN202
        depth[0] -= 1

    hooks = [torch.nn.modules.module.register_module_forward_pre_hook(enter),
             torch.nn.modules.module.register_module_forward_hook(leave)]
    mode = LowPrecisionOps(depth)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16), mode:
            out = method(views, index)
    finally:
        for h in hooks:
            h.remove()
    assert out.losses["loss"].dtype == torch.float32
    assert torch.isfinite(out.losses["loss"])
    assert not mode.found, f"{name} computes its loss partly in bf16: {sorted(set(mode.found))}"

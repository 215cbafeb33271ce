"""DDP under torchrun (gloo, CPU): the distributed loss and gradients equal one process's."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import write_params
from selfsup.config import load_config
from selfsup.methods import build_method

WORKERS = Path(__file__).parent / "workers"


@pytest.mark.parametrize("method", ["simclr", "barlow"])
def test_two_process_loss_and_gradients_equal_single_process(project, method) -> None:
    # No BatchNorm anywhere, so each rank's forward sees exactly what one process sees.
    params = write_params(project, method=method, backbone={"name": "small_cnn", "width": 4, "norm": "none"},
                          projector={"layers": 2, "hidden_dim": 16, "out_dim": 8, "hidden_bn": False})
    g = torch.Generator().manual_seed(0)
    views = [torch.randn(8, 3, 16, 16, generator=g) for _ in range(2)]  # 2 x B samples, B = 4 per rank
    torch.save(views, project / "views.pt")
    torchrun = shutil.which("torchrun") or f"{sys.executable} -m torch.distributed.run"
    cmd = [*torchrun.split(), "--nproc_per_node=2", "--standalone",
           str(WORKERS / "simclr_ddp.py"), str(params), str(project / "ddp.pt")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = torch.load(project / "ddp.pt", weights_only=True)
    assert ddp["world"] == 2

    torch.manual_seed(0)
    single = build_method(load_config(params))
    loss = single(views).losses["loss"]
    loss.backward()
    assert torch.allclose(ddp["loss"], loss.detach(), rtol=1e-5, atol=1e-6)
    for name, p in single.named_parameters():
        assert torch.allclose(ddp["grads"][name], p.grad, rtol=1e-4, atol=1e-5), name

"""Global BatchNorm, DDP's buffer policy and the BatchNorm rules of each method's recipe.

The process group here has one rank (gloo), so every collective runs for real and the global
statistics must equal plain BatchNorm's; tests/test_dist.py runs two processes.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.distributed as torch_dist
from torch import nn

from conftest import TINY_RUN, write_params
from selfsup.errors import ConfigError
from selfsup.methods import DataInfo, build_method, check_batch_norm
from selfsup.parallel import GlobalBatchNorm, convert_global_bn, data_parallel, global_batch_norm
from selfsup.params import load_config


@pytest.fixture
def group(tmp_path: Path):  # noqa: ANN201
    torch_dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    torch_dist.destroy_process_group()


def _net(norm: type[nn.Module] = nn.BatchNorm2d) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), norm(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5),
                         nn.BatchNorm1d(5, momentum=None))


def test_global_batch_norm_equals_batch_norm_forward_backward_and_statistics(group) -> None:
    plain = _net()
    converted = convert_global_bn(copy.deepcopy(plain))
    assert [type(m) for m in converted if isinstance(m, nn.modules.batchnorm._BatchNorm)] == [GlobalBatchNorm] * 2
    with torch.no_grad():  # non-trivial affine parameters, so a missed scale or shift shows
        for a, b in zip(plain.parameters(), converted.parameters(), strict=True):
            a.add_(0.1), b.add_(0.1)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        x = 2.0 + 3.0 * torch.randn(6, 3, 8, 8, generator=g)
        ya, yb = plain(x), converted(x)
        torch.testing.assert_close(yb, ya, rtol=1e-5, atol=1e-5)
        ya.pow(2).sum().backward()
        yb.pow(2).sum().backward()
    for (name, a), b in zip(plain.named_parameters(), converted.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")
    for (name, a), b in zip(plain.named_buffers(), converted.buffers(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")
    plain.eval(), converted.eval()  # evaluation uses the running statistics, as BatchNorm does
    x = torch.randn(4, 3, 8, 8, generator=g)
    torch.testing.assert_close(converted(x), plain(x), rtol=1e-5, atol=1e-5)


def test_without_a_group_or_without_sync_nothing_changes() -> None:
    net = _net()
    assert global_batch_norm(net, torch.device("cpu")) is net
    assert all(type(m) is not GlobalBatchNorm for m in net.modules())
    assert data_parallel(net, torch.device("cpu")) is net


def test_data_parallel_broadcasts_no_buffers(group) -> None:
    """Memory banks and queues are kept in step by each method's own gathers, not re-sent every step."""
    ddp = data_parallel(_net(), torch.device("cpu"))
    assert isinstance(ddp, nn.parallel.DistributedDataParallel) and ddp.broadcast_buffers is False
    converted = global_batch_norm(_net(), torch.device("cpu"))
    assert sum(isinstance(m, GlobalBatchNorm) for m in converted.modules()) == 2


GLOBAL_BN = ("barlow", "byol", "dino", "mocov3", "simclr", "simclrv2", "simsiam", "swav")


@pytest.mark.parametrize("method", GLOBAL_BN)
def test_recipes_that_need_global_batch_norm_ask_for_it(project: Path, method: str) -> None:
    assert load_config(write_params(project, method=method)).train.sync_bn is True


@pytest.mark.parametrize("method", ["moco", "mocov1"])
def test_global_batch_norm_with_shuffling_bn_is_refused(project: Path, method: str) -> None:
    cfg = load_config(write_params(project, method=method, **{**TINY_RUN, "shuffle_bn_splits": 2}))
    assert cfg.train.sync_bn is False
    build_method(cfg, DataInfo(64))
    bad = load_config(write_params(project, method=method, **{**TINY_RUN, "shuffle_bn_splits": 2,
                                                               "train": {"sync_bn": True}}))
    with pytest.raises(ConfigError, match="sync_bn=true.*Shuffling BN.*train.sync_bn=false"):
        build_method(bad, DataInfo(64))


@pytest.mark.parametrize("preset", ["paper", "digits-cpu", "cifar10-resnet18", "stl10-resnet18"])
def test_every_preset_gives_each_method_its_own_batch_norm_rule(project: Path, preset: str) -> None:
    """No preset turns global BatchNorm on for every method (it would refuse MoCo): each method's recipe does."""
    for method in ("moco", "mocov1", *GLOBAL_BN):
        cfg = load_config(write_params(project, method=method, preset=preset))
        check_batch_norm(cfg)
        assert cfg.train.sync_bn is (method in GLOBAL_BN), (preset, method)

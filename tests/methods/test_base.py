"""The method base's momentum copies: the EMA (MoCo Eq. 2) by hand, with and without buffers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import TINY_RUN, write_params
from selfsup.config import Config
from selfsup.methods import DataInfo, Method
from selfsup.params import load_config


class Pair(Method):
    """One online network (Linear + BatchNorm) and its momentum copy, with a fixed m = 0.75."""

    def __init__(self, cfg: Config, info: DataInfo, copy_buffers: bool) -> None:
        super().__init__(cfg, info)
        self.online = nn.Sequential(nn.Linear(2, 1), nn.BatchNorm1d(1))
        with torch.no_grad():
            self.online[0].weight.copy_(torch.tensor([[1.0, -2.0]]))
            self.online[0].bias.fill_(4.0)
        self.target = self.momentum_copy(self.online, copy_buffers=copy_buffers)

    def ema_momentum(self, step: int, total_steps: int) -> float:
        return 0.75


def _pair(project: Path, copy_buffers: bool) -> Pair:
    return Pair(load_config(write_params(project, **TINY_RUN)), DataInfo(16), copy_buffers)


@pytest.mark.parametrize("copy_buffers", [False, True])
def test_ema_is_exactly_m_target_plus_one_minus_m_online(project: Path, copy_buffers: bool) -> None:
    method = _pair(project, copy_buffers)
    assert torch.equal(method.target[0].weight, method.online[0].weight)  # starts as a copy
    assert not any(p.requires_grad for p in method.target.parameters())
    with torch.no_grad():
        method.target[0].weight.copy_(torch.tensor([[3.0, 0.0]]))
        method.target[0].bias.fill_(0.0)
        method.online[1].running_mean.fill_(3.0)
        method.target[1].running_mean.fill_(-1.0)
    online = {k: v.clone() for k, v in method.online.state_dict().items()}
    method.on_step_end(0, 10)
    # 0.75 * 3 + 0.25 * 1 = 2.5; 0.75 * 0 + 0.25 * -2 = -0.5; 0.75 * 0 + 0.25 * 4 = 1
    assert method.target[0].weight.tolist() == [[2.5, -0.5]]
    assert method.target[0].bias.tolist() == [1.0]
    # BatchNorm's affine weight and bias are parameters: both 1 and 0 in each network, so unchanged
    assert method.target[1].weight.tolist() == [1.0] and method.target[1].bias.tolist() == [0.0]
    # buffers: copied from the online network, or the target's own left as they were
    assert method.target[1].running_mean.tolist() == ([3.0] if copy_buffers else [-1.0])
    assert all(torch.equal(online[k], v) for k, v in method.online.state_dict().items())


def test_a_given_target_starts_from_the_online_weights(project: Path) -> None:
    method = _pair(project, copy_buffers=False)
    built = nn.Sequential(nn.Linear(2, 1), nn.BatchNorm1d(1))
    given = method.momentum_copy(method.online, copy_buffers=False, target=built)
    assert given is built and len(method.momentum_pairs) == 2
    assert all(torch.equal(v, method.online.state_dict()[k]) for k, v in built.state_dict().items())
    assert not any(p.requires_grad for p in built.parameters())
    with torch.no_grad():
        built[0].weight.fill_(5.0)
    method.on_step_end(0, 10)  # every declared copy follows: 0.75 * 5 + 0.25 * (1, -2)
    assert built[0].weight.tolist() == [[4.0, 3.25]]


def test_a_method_without_momentum_copies_has_no_ema(project: Path) -> None:
    method = Method(load_config(write_params(project, **TINY_RUN)), DataInfo(16))
    before = {k: v.clone() for k, v in method.state_dict().items()}
    method.on_step_end(0, 10)  # no momentum copies: ema_momentum is never asked for
    assert method.scheduled_values(0, 10) == {}
    assert all(torch.equal(before[k], v) for k, v in method.state_dict().items())
    with pytest.raises(NotImplementedError, match="no ema_momentum schedule"):
        method.ema_momentum(0, 10)

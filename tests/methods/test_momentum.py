"""EMA updates (MoCo Eq. 2) and BYOL's cosine momentum schedule, by hand."""

import math

import pytest
import torch
from torch import nn

from selfsup.methods.momentum import cosine_momentum, ema_update_, momentum_copy


def test_ema_update_is_exactly_m_target_plus_one_minus_m_online() -> None:
    online = nn.Linear(2, 1)
    with torch.no_grad():
        online.weight.copy_(torch.tensor([[1.0, -2.0]]))
        online.bias.fill_(4.0)
    target = momentum_copy(online)
    with torch.no_grad():
        target.weight.copy_(torch.tensor([[3.0, 0.0]]))
        target.bias.fill_(0.0)
    ema_update_(target, online, 0.75)
    # 0.75 * 3 + 0.25 * 1 = 2.5; 0.75 * 0 + 0.25 * -2 = -0.5; 0.75 * 0 + 0.25 * 4 = 1
    assert target.weight.tolist() == [[2.5, -0.5]]
    assert target.bias.tolist() == [1.0]
    assert not any(p.requires_grad for p in target.parameters())


def test_ema_copies_buffers_and_leaves_online_untouched() -> None:
    online = nn.BatchNorm1d(2)
    online.running_mean.fill_(3.0)
    target = momentum_copy(online)
    target.running_mean.fill_(-1.0)
    before = {k: v.clone() for k, v in online.state_dict().items()}
    ema_update_(target, online, 0.9)
    assert target.running_mean.tolist() == [3.0, 3.0]
    assert all(torch.equal(before[k], v) for k, v in online.state_dict().items())


@pytest.mark.parametrize(("step", "expected"), [(0, 0.99), (50, 0.995), (100, 1.0)])
def test_cosine_momentum_rises_from_base_to_one(step: int, expected: float) -> None:
    # 1 - (1 - 0.99) * (cos(pi k / K) + 1) / 2 at k = 0, K/2, K.
    assert math.isclose(cosine_momentum(0.99, step, 100), expected, abs_tol=1e-12)

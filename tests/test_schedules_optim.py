"""Learning-rate and momentum schedules, lr scaling, LARS steps worked out by hand, and parameter groups."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from selfsup.config.image import OptimConfig
from selfsup.optim import LARS, build_optimizer, param_groups, set_hyperparameters
from selfsup.schedules import cosine_momentum, scaled_lr, warmup_cosine, warmup_steps, weight_decay_schedule

# -- schedules -------------------------------------------------------------------------------------


def test_warmup_cosine_values_by_hand() -> None:
    lrs = warmup_cosine(base=1.0, total_steps=10, warmup_steps=2, final=0.1)
    assert len(lrs) == 10
    # warm-up: linspace(0, 1, 2, endpoint=False) = [0, 0.5]
    assert lrs[0] == 0.0
    assert lrs[1] == pytest.approx(0.5)
    # cosine over n = 8 steps with t = i / 8: step 2 is t = 0 -> base
    assert lrs[2] == pytest.approx(1.0)
    # step 3: t = 1/8 -> 0.1 + 0.45 * (1 + cos(pi/8)) = 0.1 + 0.45 * 1.9238795 = 0.9657458
    assert lrs[3] == pytest.approx(0.9657458, abs=1e-7)
    # last step: t = 7/8 -> 0.1 + 0.45 * (1 + cos(7pi/8)) = 0.1 + 0.45 * 0.0761205 = 0.1342542
    assert lrs[-1] == pytest.approx(0.1342542, abs=1e-7)
    assert lrs[-1] > 0.1  # t never reaches 1, so the schedule stays above ``final``
    after = lrs[2:]
    assert (np.diff(after) < 0).all()


def test_warmup_cosine_start_and_edge_cases() -> None:
    np.testing.assert_allclose(warmup_cosine(1.0, 6, warmup_steps=4, start=0.2)[:4], [0.2, 0.4, 0.6, 0.8])
    # no warm-up: starts at base, halfway (t = 1/2) is the midpoint of base and final
    lrs = warmup_cosine(2.0, 4, final=0.0)
    np.testing.assert_allclose(lrs, [2.0, 1.0 + math.cos(math.pi / 4), 1.0, 1.0 - math.cos(math.pi / 4)])
    # a warm-up longer than the run is clipped to it, ending just below base
    np.testing.assert_allclose(warmup_cosine(1.0, 4, warmup_steps=10), [0.0, 0.25, 0.5, 0.75])
    assert len(warmup_cosine(1.0, 0, warmup_steps=3)) == 0
    np.testing.assert_allclose(warmup_cosine(0.3, 1), [0.3])


def test_step_schedule_drops_tenfold_at_each_fraction() -> None:
    # 2 warm-up steps (0, 0.5), then 1.0 until t = 6/10 >= 0.6, 0.1 until 8/10 >= 0.8, then 0.01
    expected = [0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01]
    assert np.allclose(warmup_steps(1.0, 10, 2, (0.6, 0.8)), expected)
    assert np.allclose(warmup_steps(2.0, 4, 0, ()), [2.0] * 4)


@pytest.mark.parametrize(("step", "expected"), [(0, 0.99), (50, 0.995), (100, 1.0)])
def test_cosine_momentum_rises_from_base_to_one(step: int, expected: float) -> None:
    # 1 - (1 - 0.99) * (cos(pi k / K) + 1) / 2 at k = 0, K/2, K.
    assert math.isclose(cosine_momentum(0.99, step, 100), expected, abs_tol=1e-12)


def test_cosine_momentum_without_steps_keeps_its_base() -> None:
    assert cosine_momentum(0.9, 0, 0) == 0.9
    assert math.isclose(cosine_momentum(0.5, 1, 2, final=0.7), 0.6, abs_tol=1e-12)  # halfway to ``final``


def test_scaled_lr_rules() -> None:
    assert scaled_lr(0.3, 512, "linear") == pytest.approx(0.6)
    assert scaled_lr(0.3, 64, "linear") == pytest.approx(0.075)
    assert scaled_lr(0.3, 1024, "sqrt") == pytest.approx(0.6)
    assert scaled_lr(0.3, 64, "sqrt") == pytest.approx(0.15)
    assert scaled_lr(0.3, 4096, "none") == 0.3
    assert scaled_lr(1.0, 256, "linear") == scaled_lr(1.0, 256, "sqrt") == 1.0


# -- LARS ------------------------------------------------------------------------------------------


def _lars_param(w: list[float], **kwargs: float) -> tuple[nn.Parameter, LARS]:
    p = nn.Parameter(torch.tensor(w, dtype=torch.float64))
    opts = dict(lr=1.0, momentum=0.9, weight_decay=0.0, trust_coefficient=0.001) | kwargs
    return p, LARS([p], **opts)


def _step(p: nn.Parameter, opt: LARS, grad: list[float]) -> None:
    p.grad = torch.tensor(grad, dtype=torch.float64)
    opt.step()


def test_lars_two_steps_by_hand() -> None:
    p, opt = _lars_param([3.0, 4.0])
    _step(p, opt, [0.6, 0.8])
    # ||w|| = 5, ||g|| = 1: trust = 0.001 * 5 / 1 = 0.005, update = 0.005 * g = [0.003, 0.004]
    torch.testing.assert_close(p.detach(), torch.tensor([2.997, 3.996], dtype=torch.float64), rtol=0, atol=1e-12)
    _step(p, opt, [0.6, 0.8])
    # ||w|| = 4.995: trust = 0.004995, scaled grad = [0.002997, 0.003996]
    # momentum buffer = 0.9 * [0.003, 0.004] + [0.002997, 0.003996] = [0.005697, 0.007596]
    torch.testing.assert_close(p.detach(), torch.tensor([2.991303, 3.988404], dtype=torch.float64),
                               rtol=0, atol=1e-12)
    torch.testing.assert_close(opt.state[p]["momentum_buffer"], torch.tensor([0.005697, 0.007596],
                                                                             dtype=torch.float64), rtol=0, atol=1e-12)


def test_lars_trust_ratio_includes_weight_decay() -> None:
    p, opt = _lars_param([3.0, 4.0], weight_decay=0.1, lr=2.0)
    _step(p, opt, [0.0, 0.0])
    # d = g + 0.1 w = [0.3, 0.4], ||d|| = 0.5: trust = 0.001 * 5 / 0.5 = 0.01, step = 2 * 0.01 * d = [0.006, 0.008]
    torch.testing.assert_close(p.detach(), torch.tensor([2.994, 3.992], dtype=torch.float64), rtol=0, atol=1e-12)


def test_lars_falls_back_to_sgd_for_zero_weights_or_grads() -> None:
    p, opt = _lars_param([0.0, 0.0], lr=0.5)
    _step(p, opt, [1.0, -2.0])  # ||w|| = 0: trust 1, a plain SGD step
    torch.testing.assert_close(p.detach(), torch.tensor([-0.5, 1.0], dtype=torch.float64), rtol=0, atol=1e-12)
    q, opt = _lars_param([3.0, 4.0])
    _step(q, opt, [0.0, 0.0])  # zero gradient: no move, no NaN
    torch.testing.assert_close(q.detach(), torch.tensor([3.0, 4.0], dtype=torch.float64), rtol=0, atol=0)


def _tiny() -> nn.Sequential:
    return nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))


def test_param_groups_split_biases_and_norms() -> None:
    model = _tiny()
    linear, bn = model[0], model[1]
    regular, excluded = param_groups(model, 0.1, exclude_bias_and_norm=True)
    assert [id(p) for p in regular["params"]] == [id(linear.weight)]
    assert [id(p) for p in excluded["params"]] == [id(linear.bias), id(bn.weight), id(bn.bias)]
    assert (regular["weight_decay"], regular["lars"]) == (0.1, True)
    assert (excluded["weight_decay"], excluded["lars"]) == (0.0, False)

    (only,) = param_groups(model, 0.1, exclude_bias_and_norm=False)
    assert len(only["params"]) == 4 and only["weight_decay"] == 0.1 and only["lars"] is True

    linear.bias.requires_grad_(False)  # frozen parameters are left out
    regular, excluded = param_groups(model, 0.1, exclude_bias_and_norm=True)
    assert [id(p) for p in excluded["params"]] == [id(bn.weight), id(bn.bias)]


def test_excluded_group_takes_plain_sgd_steps_without_decay() -> None:
    model = nn.Sequential(nn.Linear(2, 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[3.0, 4.0]]))
        model[0].bias.copy_(torch.tensor([1.0]))
    opt = LARS(param_groups(model, 0.1, exclude_bias_and_norm=True), lr=1.0, momentum=0.9, trust_coefficient=0.001)
    for step in range(2):
        model[0].weight.grad = torch.tensor([[0.6, 0.8]])
        model[0].bias.grad = torch.tensor([0.5])
        opt.step()
        if step == 0:
            # weight: d = g + 0.1 w = [0.9, 1.2], ||d|| = 1.5, trust = 0.001 * 5 / 1.5, step = [0.003, 0.004]
            torch.testing.assert_close(model[0].weight.detach(), torch.tensor([[2.997, 3.996]]))
            # bias: plain SGD, 1 - 0.5 (decay would give 0.4, LARS adaptation 0.999)
            torch.testing.assert_close(model[0].bias.detach(), torch.tensor([0.5]))
    # second bias step adds momentum: buffer 0.9 * 0.5 + 0.5 = 0.95 -> 0.5 - 0.95
    torch.testing.assert_close(model[0].bias.detach(), torch.tensor([-0.45]))


@pytest.mark.parametrize("name, cls", [("lars", LARS), ("sgd", torch.optim.SGD), ("adamw", torch.optim.AdamW)])
def test_build_optimizer(name: str, cls: type) -> None:
    cfg = OptimConfig(name=name, weight_decay=0.05, momentum=0.8, trust_coefficient=0.02, betas=(0.8, 0.9))
    opt = build_optimizer(_tiny(), cfg, lr=0.4)
    assert type(opt) is cls
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]
    assert [len(g["params"]) for g in opt.param_groups] == [1, 3]
    assert all(g["lr"] == 0.4 for g in opt.param_groups)
    if name == "lars":
        assert [g["lars"] for g in opt.param_groups] == [True, False]
        assert opt.param_groups[0]["trust_coefficient"] == 0.02 and opt.param_groups[0]["momentum"] == 0.8
    elif name == "sgd":
        assert opt.param_groups[0]["momentum"] == 0.8
        assert "lars" not in opt.param_groups[0]
    else:
        assert opt.param_groups[0]["betas"] == (0.8, 0.9)


def test_groups_take_their_ratio_and_fixed_rate_and_only_decaying_groups_follow_the_decay_schedule() -> None:
    """Barlow Twins' biases / BN at 0.0048 / 0.2 of the weights' rate; SimSiam's predictor at the peak rate."""
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2), nn.Linear(2, 2))
    cfg = OptimConfig(name="sgd", weight_decay=0.1, bias_norm_lr_ratio=0.024)
    opt = build_optimizer(model, cfg, lr=0.2, fixed_lr=[model[2]])
    weights, bias_norm, fixed_weight, fixed_bias = opt.param_groups
    assert [len(g["params"]) for g in opt.param_groups] == [1, 3, 1, 1]
    assert fixed_weight["params"][0] is model[2].weight and fixed_bias["params"][0] is model[2].bias
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.2, 0.0048, 0.2, 0.0048])
    set_hyperparameters(opt, lr=0.05, peak_lr=0.2, weight_decay=0.3)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.05, 0.0012, 0.2, 0.0048])
    assert [g["weight_decay"] for g in opt.param_groups] == [0.3, 0.0, 0.3, 0.0]

    # a rate ratio alone splits the groups; without exclusion both decay and both are adapted by LARS
    lars = build_optimizer(model, OptimConfig(weight_decay=0.1, bias_norm_lr_ratio=0.5,
                                              exclude_bias_and_norm=False), lr=1.0)
    assert [(g["lr"], g["weight_decay"], g["lars"]) for g in lars.param_groups] == [(1.0, 0.1, True), (0.5, 0.1, True)]


def test_a_bias_step_moves_by_the_bias_rate() -> None:
    """One SGD step of Barlow Twins' groups: the bias moves 0.024 as far as it would at the weights' rate."""
    model = nn.Sequential(nn.Linear(2, 1))
    opt = build_optimizer(model, OptimConfig(name="sgd", momentum=0.0, weight_decay=0.0, bias_norm_lr_ratio=0.024),
                          lr=0.2)
    before = model[0].bias.detach().clone()
    model(torch.ones(1, 2)).sum().backward()  # d/db = 1
    opt.step()
    torch.testing.assert_close(model[0].bias.detach(), before - 0.0048)


def test_weight_decay_schedule_is_constant_or_dinos_cosine() -> None:
    assert list(weight_decay_schedule(4, OptimConfig(weight_decay=0.05))) == [0.05] * 4
    wd = weight_decay_schedule(100, OptimConfig(weight_decay=0.04, weight_decay_end=0.4))
    # main_dino.py cosine_scheduler: final + (base - final) (1 + cos(pi i / n)) / 2, no warm-up
    expected = 0.4 + 0.5 * (0.04 - 0.4) * (1 + np.cos(np.pi * np.arange(100) / 100))
    np.testing.assert_allclose(wd, expected)
    assert wd[0] == pytest.approx(0.04) and wd[-1] == pytest.approx(0.4, abs=1e-3)

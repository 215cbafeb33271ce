"""SimSiam: Eq. (4) by hand, the stop-gradient, the heads, and a training-loop smoke run."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from conftest import TINY_RUN, tiny_dataset, write_params
from selfsup.config import Config
from selfsup.methods import DataInfo, build_method
from selfsup.methods.simsiam import simsiam_loss
from selfsup.params import load_config
from selfsup.train import image_loop


def _config(project: Path, **knobs: object) -> Config:
    return load_config(write_params(project, method="simsiam", preset="paper", **{**TINY_RUN, **knobs}))


def _case() -> tuple[torch.Tensor, ...]:
    # Two images, d = 3:
    #   p1 = (1,0,0), (0,2,0)   z2 = (1,1,0), (0,-1,0)   cos: 1/sqrt 2, -1
    #   p2 = (0,0,1), (1,1,0)   z1 = (3,0,0), (0,1,1)    cos: 0, 1/2
    p1 = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]], requires_grad=True)
    p2 = torch.tensor([[0.0, 0.0, 1.0], [1.0, 1.0, 0.0]], requires_grad=True)
    z1 = torch.tensor([[3.0, 0.0, 0.0], [0.0, 1.0, 1.0]], requires_grad=True)
    z2 = torch.tensor([[1.0, 1.0, 0.0], [0.0, -1.0, 0.0]], requires_grad=True)
    return p1, p2, z1, z2


def test_simsiam_loss_matches_hand_computed_case() -> None:
    # L = D(p1, z2)/2 + D(p2, z1)/2 with D = -mean cos:
    #   D(p1, z2) = -(1/sqrt 2 - 1)/2, D(p2, z1) = -(0 + 1/2)/2 -> L = -((c - 1)/2 + 1/4)/2 = -0.0517767
    c = 1 / math.sqrt(2)
    expected = -((c - 1) / 2 + 0.25) / 2
    assert math.isclose(expected, -0.0517767, abs_tol=1e-7)
    for stop in (True, False):
        assert math.isclose(simsiam_loss(*_case(), stop_gradient=stop).item(), expected, rel_tol=1e-6)
    # identical directions give the minimum -1
    z = torch.randn(4, 5)
    assert math.isclose(simsiam_loss(2 * z, 3 * z, z, z).item(), -1.0, rel_tol=1e-6)


def test_stop_gradient_blocks_the_gradient_through_z() -> None:
    p1, p2, z1, z2 = _case()
    simsiam_loss(p1, p2, z1, z2, stop_gradient=True).backward()
    assert z1.grad is None and z2.grad is None
    assert p1.grad.abs().sum() > 0 and p2.grad.abs().sum() > 0
    p1, p2, z1, z2 = _case()
    simsiam_loss(p1, p2, z1, z2, stop_gradient=False).backward()
    # without it, z2 receives -(1/2)(1/n) d cos(p1, z2)/d z2; for image b, p1b = -z2b direction -> 0 there
    # image a: d cos(u, v)/dv = u/(|u||v|) - cos v/|v|^2 with u = (1,0,0), v = (1,1,0):
    #   (1/sqrt 2)(1,0,0) - (1/sqrt 2)(1,1,0)/2 = (1/(2 sqrt 2), -1/(2 sqrt 2), 0)  -> times -1/4
    g = 1 / (2 * math.sqrt(2)) / 4
    assert torch.allclose(z2.grad[0], torch.tensor([-g, g, 0.0]), atol=1e-6)
    assert torch.allclose(z2.grad[1], torch.zeros(3), atol=1e-6)
    assert z1.grad.abs().sum() > 0


def test_heads_follow_the_paper(project: Path) -> None:
    cfg = _config(project, projector={"layers": 3, "hidden_dim": 16, "out_dim": 12}, predictor_hidden_dim=4)
    assert cfg.knobs.stop_gradient is True and cfg.projector.last_bn  # params/methods/simsiam.yaml
    method = build_method(cfg, DataInfo(64))
    assert [type(m) for m in method.projector] == [nn.Linear, nn.BatchNorm1d, nn.ReLU] * 2 + [nn.Linear,
                                                                                              nn.BatchNorm1d]
    assert not method.projector[-1].affine
    assert [type(m) for m in method.predictor] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert (method.predictor[0].in_features, method.predictor[0].out_features) == (12, 4)
    assert method.predictor[0].bias is None and method.predictor[3].out_features == 12
    assert method.predictor[3].bias is not None  # the predictor's output has no BN, so it keeps its bias


def test_trainer_smoke_state_and_features(project: Path) -> None:
    data = tiny_dataset(project / "data")
    trainer = image_loop(_config(project), data, project / "ck")
    before = {k: v.clone() for k, v in trainer.task.method.state_dict().items()}
    history = trainer.fit()
    assert all(math.isfinite(r["loss"]) and -1.0 <= r["loss"] <= 1.0 for r in history.rows)
    state = trainer.task.method.state_dict()
    assert any(k.startswith("predictor.") for k in state)
    assert not torch.equal(before["predictor.0.weight"], state["predictor.0.weight"])
    assert not torch.equal(before["projector.0.weight"], state["projector.0.weight"])
    feats = trainer.task.method.feature_extractor()(torch.randn(3, 3, 16, 16))
    assert feats.shape == (3, 32)

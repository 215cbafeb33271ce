"""SimCLR v2: 3-layer head, evaluation from inside the head, NT-Xent against momentum-encoder keys."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import TINY_RUN, tiny_dataset, write_params
from selfsup.config import Config
from selfsup.errors import ConfigError
from selfsup.methods import DataInfo, Views, build_method
from selfsup.methods.simclr import nt_xent
from selfsup.params import load_config
from selfsup.train import image_loop

HEAD = {"layers": 3, "hidden_dim": 24, "out_dim": 8, "hidden_bn": True, "last_bn": True}


def _config(project: Path, **knobs: object) -> Config:
    return load_config(write_params(project, method="simclrv2", preset="paper", **{**TINY_RUN, "projector": HEAD},
                                    **knobs))


def slow_nt_xent_with_keys(q: torch.Tensor, k: torch.Tensor, tau: float) -> float:
    """l(i, j) = -log(exp(sim(q_i, k_j)/tau) / sum_{c != i} exp(sim(q_i, k_c)/tau)), j = i's other view."""
    q, k = q.double(), k.double()
    n2 = len(q)

    def sim(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(a @ b / (a.norm() * b.norm()))

    total = 0.0
    for i in range(n2):
        j = (i + n2 // 2) % n2
        denom = sum(math.exp(sim(q[i], k[c]) / tau) for c in range(n2) if c != i)
        total -= math.log(math.exp(sim(q[i], k[j]) / tau) / denom)
    return total / n2


def test_nt_xent_against_keys_by_hand_and_by_slow_loop() -> None:
    # Queries q = (1,0), (0,1) | (0,1), (1,0); keys k = (1,0), (1,0) | (0,1), (-1,0); tau = 1.
    # q1: positive k3 (cos 0), others k2 (1), k4 (-1)  -> -log(1 / (1 + e + 1/e))
    # q2: positive k4 (0), others k1 (0), k3 (1)       -> -log(1 / (1 + 1 + e))
    # q3: positive k1 (0), others k2 (0), k4 (0)       -> log 3
    # q4: positive k2 (1), others k1 (1), k3 (0)       -> -log(e / (e + e + 1))
    e = math.e
    expected = (math.log(1 + e + 1 / e) + math.log(2 + e) + math.log(3) - math.log(e / (2 * e + 1))) / 4
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    k = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    assert math.isclose(nt_xent(q, k, temperature=1.0).item(), expected, rel_tol=1e-6)
    assert math.isclose(expected, slow_nt_xent_with_keys(q, k, 1.0), rel_tol=1e-9)
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    assert math.isclose(nt_xent(q, k, temperature=0.1).item(), slow_nt_xent_with_keys(q, k, 0.1), rel_tol=1e-5)


def test_head_has_three_blocks_with_output_bn(project) -> None:
    method = build_method(_config(project), DataInfo(64))
    blocks = [[type(m) for m in block] for block in method.projector]
    assert blocks == [[nn.Linear, nn.BatchNorm1d, nn.ReLU]] * 2 + [[nn.Linear, nn.BatchNorm1d]]
    assert not method.projector[2][1].affine
    assert method.knobs.temperature == 0.1 and method.knobs.eval_from_layer == 1  # params/methods/simclrv2.yaml


@pytest.mark.parametrize(("layer", "dim"), [(0, 32), (1, 24), (2, 24)])
def test_feature_extractor_stops_inside_the_head(project, layer: int, dim: int) -> None:
    method = build_method(_config(project, eval_from_layer=layer), DataInfo(64)).eval()
    x = torch.randn(5, 3, 16, 16)
    with torch.no_grad():
        feats = method.feature_extractor()(x)
        expected = method.backbone(x)
        for block in method.projector[:layer]:
            expected = block(expected)
    assert feats.shape == (5, dim)  # backbone width 4 -> 8 * 4 = 32 features; hidden_dim 24
    assert torch.equal(feats, expected)
    if layer:
        assert (feats >= 0).all()  # ends with the block's ReLU


def test_eval_from_layer_must_lie_inside_the_head(project) -> None:
    with pytest.raises(ConfigError, match="eval_from_layer=3"):
        build_method(_config(project, eval_from_layer=3), DataInfo(64))


def test_momentum_encoder_supplies_the_keys(project) -> None:
    method = build_method(_config(project, momentum_encoder=True), DataInfo(64))
    views = Views([torch.randn(6, 3, 16, 16), torch.randn(6, 3, 16, 16)])
    # at the start the key encoder is an exact copy: the loss is plain NT-Xent on the online projections
    out = method(views, torch.arange(6))
    z = method.projector(method.backbone(torch.cat(views.large)))
    assert torch.allclose(out.losses["loss"], nt_xent(z, temperature=0.1), atol=1e-6)
    with torch.no_grad():
        for p in method.key_projector.parameters():
            p.add_(0.3 * torch.randn_like(p))
        keys = method.key_projector(method.key_backbone(torch.cat(views.large)))
    out = method(views, torch.arange(6))
    q = method.projector(method.backbone(torch.cat(views.large)))
    assert math.isclose(out.losses["loss"].item(), slow_nt_xent_with_keys(q.detach(), keys, 0.1), rel_tol=1e-5)
    out.losses["loss"].backward()
    assert all(p.grad is None for p in method.key_projector.parameters())
    assert all(p.grad is not None for p in method.projector.parameters())


def test_trainer_smoke_with_momentum_encoder(project) -> None:
    data = tiny_dataset(project / "data")
    trainer = image_loop(_config(project, momentum_encoder=True, momentum=0.9), data, project / "ck")
    method = trainer.task.method
    trainer.fit(until=3)
    key_before = {k: v.clone() for k, v in method.key_backbone.state_dict().items()}
    trainer.task.train_step(3, trainer.opt)
    # one step of theta_k <- 0.9 theta_k + 0.1 theta_q; the BatchNorm statistics stay the key encoder's own
    for (name, t), q in zip(method.key_backbone.named_parameters(), method.backbone.parameters(), strict=True):
        assert torch.allclose(t, 0.9 * key_before[name] + 0.1 * q, atol=1e-6), name
        assert not torch.equal(t, key_before[name])
    online = dict(method.backbone.named_buffers())
    assert any(not torch.equal(buf, online[name]) for name, buf in method.key_backbone.named_buffers()
               if buf.is_floating_point())
    history = trainer.fit()
    assert math.isfinite(history.rows[-1]["loss"])
    state = method.state_dict()
    assert any(k.startswith("key_backbone.") for k in state) and any(k.startswith("key_projector.") for k in state)
    assert trainer.task.method.feature_extractor()(torch.randn(2, 3, 16, 16)).shape == (2, 24)


def test_no_momentum_encoder_state_without_the_knob(project) -> None:
    method = build_method(_config(project), DataInfo(64))
    assert not any(k.startswith("key_") for k in method.state_dict())
    assert not hasattr(method, "key_backbone")
    assert method.scheduled_values(0, 10) == {}  # nothing scheduled without the momentum encoder
    keyed = build_method(_config(project, momentum_encoder=True, momentum=0.9), DataInfo(64))
    assert keyed.scheduled_values(0, 10) == keyed.scheduled_values(9, 10) == {"ema_momentum": 0.9}

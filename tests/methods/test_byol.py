"""BYOL: Eq. 2 by hand, the EMA target with BYOL's cosine momentum, and the normalisation variants."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import TINY_RUN, tiny_dataset, write_params
from selfsup.config import Config
from selfsup.methods import DataInfo, Views, build_method
from selfsup.methods.byol import byol_loss
from selfsup.params import load_config
from selfsup.train import image_loop


def _config(project: Path, **knobs: object) -> Config:
    return load_config(write_params(project, method="byol", preset="paper", **{**TINY_RUN, **knobs}))


def test_byol_loss_matches_hand_computed_case() -> None:
    # n = 2 images, d = 3. Predictions p (view 1 | view 2) and target projections z (view 1 | view 2):
    #   p1a = (1,0,0), p1b = (0,2,0) | p2a = (0,0,1), p2b = (1,1,0)
    #   z1a = (3,0,0), z1b = (0,1,1) | z2a = (1,1,0), z2b = (0,-1,0)
    # ||p_bar - z_bar||^2 = 2 - 2 cos:
    #   image a: cos(p1a, z2a) = 1/sqrt 2 -> 2 - sqrt 2;  cos(p2a, z1a) = 0 -> 2
    #   image b: cos(p1b, z2b) = -1 -> 4;                 cos(p2b, z1b) = 1/2 -> 1
    # mean over the two images: (2 - sqrt 2 + 2 + 4 + 1) / 2 = (9 - sqrt 2) / 2
    p = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]], requires_grad=True)
    z = torch.tensor([[3.0, 0.0, 0.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0], [0.0, -1.0, 0.0]], requires_grad=True)
    loss = byol_loss(p, z)
    expected = (9 - math.sqrt(2)) / 2
    assert math.isclose(expected, 3.792893, abs_tol=1e-6)
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)
    loss.backward()
    assert z.grad is None and p.grad is not None and p.grad.abs().sum() > 0


def test_byol_loss_is_two_minus_two_cos_summed_over_view_orders() -> None:
    g = torch.Generator().manual_seed(0)
    p, z = torch.randn(10, 6, generator=g), torch.randn(10, 6, generator=g)
    n = 5
    total = 0.0
    for i in range(n):
        for a, b in ((p[i], z[n + i]), (p[n + i], z[i])):
            total += 2 - 2 * float(a @ b / (a.norm() * b.norm()))
    assert math.isclose(byol_loss(p, z).item(), total / n, rel_tol=1e-5)
    # identical directions give 0; opposite ones the maximum 8 per image
    assert byol_loss(torch.cat([z[n:], z[:n]]) * 2.5, z).item() < 1e-6
    assert math.isclose(byol_loss(-torch.cat([z[n:], z[:n]]), z).item(), 8.0, rel_tol=1e-6)


def test_target_is_the_ema_with_the_cosine_momentum_of_the_step(project: Path) -> None:
    data = tiny_dataset(project / "data")
    trainer = image_loop(_config(project, momentum=0.9), data, project / "ck")
    method = trainer.task.method
    assert trainer.task.total_steps == 12
    start = {k: v.clone() for k, v in method.backbone.state_dict().items()}
    trainer.fit(until=5)
    target = {k: v.clone() for k, v in method.target_backbone.state_dict().items()}
    target.update({f"p.{k}": v.clone() for k, v in method.target_projector.state_dict().items()})
    trainer.task.train_step(5, trainer.opt)
    # tau_5 = 1 - (1 - 0.9) (cos(5 pi / 12) + 1) / 2 = 0.937059
    m = 1 - 0.1 * (math.cos(5 * math.pi / 12) + 1) / 2
    assert math.isclose(m, 0.937059, abs_tol=1e-6)
    for prefix, tgt, online in (("", method.target_backbone, method.backbone),
                                ("p.", method.target_projector, method.projector)):
        for (name, t), o in zip(tgt.named_parameters(), online.parameters(), strict=True):
            assert torch.allclose(t, m * target[prefix + name] + (1 - m) * o, atol=1e-6), name
            assert not t.requires_grad
    # the target's BatchNorm statistics are its own (only parameters follow the online network)
    assert any(not torch.equal(t, o) for t, o in zip(method.target_backbone.buffers(), method.backbone.buffers(),
                                                      strict=True) if t.is_floating_point())
    # the target has moved away from its initial copy of the online backbone
    assert any(not torch.equal(start[k], v) for k, v in method.target_backbone.state_dict().items()
               if v.is_floating_point())


def test_scheduled_momentum_rises_from_its_base_to_one(project: Path) -> None:
    method = build_method(_config(project, momentum=0.9), DataInfo(64))
    assert method.scheduled_values(0, 12) == {"ema_momentum": 0.9}
    assert method.scheduled_values(12, 12) == {"ema_momentum": pytest.approx(1.0, abs=1e-12)}
    assert method.scheduled_values(6, 12)["ema_momentum"] == pytest.approx(0.95, abs=1e-12)  # 1 - 0.1 (0 + 1) / 2


def test_smoke_run_state_and_features(project: Path) -> None:
    data = tiny_dataset(project / "data")
    cfg = _config(project)
    assert cfg.knobs.momentum == 0.996 and cfg.knobs.norm == "bn"  # params/methods/byol.yaml
    trainer = image_loop(cfg, data, project / "ck")
    history = trainer.fit()
    assert all(math.isfinite(r["loss"]) and 0.0 <= r["loss"] <= 8.0 for r in history.rows)
    state = trainer.task.method.state_dict()
    for prefix in ("target_backbone.", "target_projector.", "predictor."):
        assert any(k.startswith(prefix) for k in state), prefix
    assert not any(k.startswith("target_predictor") for k in state)  # the target has no predictor
    feats = trainer.task.method.feature_extractor()(torch.randn(3, 3, 16, 16))
    assert feats.shape == (3, 32)


def _kinds(module: nn.Module) -> set[type]:
    return {type(m) for m in module.modules()}


def test_gn_ws_has_no_batchnorm_and_standardised_convs(project: Path) -> None:
    data = tiny_dataset(project / "data")
    trainer = image_loop(_config(project, norm="gn_ws", epochs=1), data, project / "ck")
    trainer.fit()
    method = trainer.task.method
    kinds = _kinds(method)
    assert not any(issubclass(k, nn.modules.batchnorm._BatchNorm) for k in kinds)
    for part in (method.projector, method.predictor, method.target_projector, method.backbone,
                 method.target_backbone):
        assert nn.GroupNorm in _kinds(part)
    convs = [m for net in (method.backbone, method.target_backbone) for m in net.modules()
             if isinstance(m, nn.Conv2d)]
    assert len(convs) == 12
    for conv in convs:
        w = conv.weight.flatten(1)  # the parametrised (standardised) weight
        assert torch.allclose(w.mean(1), torch.zeros(len(w)), atol=1e-5)
        assert torch.allclose(w.std(1, unbiased=False), torch.ones(len(w)), atol=1e-3)
    # the stored weight that EMA and the optimiser touch is not itself standardised
    raw = method.backbone.features[1][0].parametrizations.weight.original.flatten(1)
    assert not torch.allclose(raw.std(1, unbiased=False), torch.ones(len(raw)), atol=1e-2)


def test_norm_none_has_no_normalisation_in_the_heads(project: Path) -> None:
    method = build_method(_config(project, norm="none"), DataInfo(64))
    for head in (method.projector, method.predictor, method.target_projector):
        assert _kinds(head) == {nn.Sequential, nn.Linear, nn.ReLU}
    assert nn.BatchNorm2d in _kinds(method.backbone)  # the backbone keeps backbone.norm


def test_bn_heads_follow_the_paper(project: Path) -> None:
    method = build_method(_config(project), DataInfo(64))
    for head in (method.projector, method.predictor):
        assert [type(m) for m in head] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert method.predictor[0].in_features == method.projector[-1].out_features == 8


@pytest.mark.parametrize("norm", ["bn", "gn_ws", "none"])
def test_loss_gradient_reaches_only_the_online_network(project: Path, norm: str) -> None:
    method = build_method(_config(project, norm=norm), DataInfo(64))
    views = Views([torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)])
    method(views, torch.arange(4)).losses["loss"].backward()
    assert all(p.grad is not None for p in method.predictor.parameters())
    assert all(p.grad is not None for p in method.backbone.parameters())
    assert all(p.grad is None for p in method.target_backbone.parameters())
    assert all(p.grad is None for p in method.target_projector.parameters())

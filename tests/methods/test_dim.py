"""Deep InfoMax: the JSD / InfoNCE / DV estimators and prior matching by hand, a training-loop run."""

import math

import pytest
import torch
from torch import nn

from conftest import TINY_RUN, tiny_dataset, write_params
from selfsup.errors import ConfigError
from selfsup.methods import DataInfo, Views, build_method
from selfsup.methods.dim import (
    dv_mi,
    infonce_mi,
    jsd_mi,
    mi_estimate,
    prior_discriminator_loss,
    prior_encoder_loss,
)
from selfsup.params import load_config
from selfsup.train import image_loop

# scores[i, j, p] = T(local feature p of image i, Y of image j): 2 images, 2 positions.
# Positives (i == j): T(0,0,:) = (1, 0), T(1,1,:) = (2, -1); negatives: T(1,0,:) = (0.5, -0.5),
# T(0,1,:) = (-1, 3).
SCORES = torch.tensor([[[1.0, 0.0], [-1.0, 3.0]],
                       [[0.5, -0.5], [2.0, -1.0]]])


def sp(x: float) -> float:
    return math.log1p(math.exp(x))


def test_jsd_estimate_by_hand() -> None:
    # E_P[-sp(-T)]     = -(sp(-1) + sp(0) + sp(-2) + sp(1)) / 4 = -(0.313262 + 0.693147 + 0.126928 + 1.313262) / 4
    # E_PxP~[sp(T)]    = (sp(0.5) + sp(-0.5) + sp(-1) + sp(3)) / 4 = (0.974077 + 0.474077 + 0.313262 + 3.048587) / 4
    expected = -(sp(-1) + sp(0) + sp(-2) + sp(1)) / 4 - (sp(0.5) + sp(-0.5) + sp(-1) + sp(3)) / 4
    assert math.isclose(expected, -1.814150, abs_tol=1e-6)
    assert math.isclose(jsd_mi(SCORES).item(), expected, rel_tol=1e-6)
    assert mi_estimate(SCORES, "jsd").item() == jsd_mi(SCORES).item()


def test_infonce_estimate_by_hand() -> None:
    # Each positive (j, p) against the other image's local features at both positions:
    #   (0,0): 1 - log(e^1 + e^0.5 + e^-0.5)    = -0.604131
    #   (0,1): 0 - log(e^0 + e^0.5 + e^-0.5)    = -1.180270
    #   (1,0): 2 - log(e^2 + e^-1 + e^3)        = -1.326563
    #   (1,1): -1 - log(e^-1 + e^-1 + e^3)      = -4.035976      mean = -1.786735
    e = math.exp
    terms = [1 - math.log(e(1) + e(0.5) + e(-0.5)), 0 - math.log(e(0) + e(0.5) + e(-0.5)),
             2 - math.log(e(2) + e(-1) + e(3)), -1 - math.log(e(-1) + e(-1) + e(3))]
    expected = sum(terms) / 4
    assert math.isclose(expected, -1.786735, abs_tol=1e-6)
    assert math.isclose(infonce_mi(SCORES).item(), expected, rel_tol=1e-6)


def test_dv_estimate_by_hand() -> None:
    # E_P[T] = (1 + 0 + 2 - 1) / 4 = 0.5; log E_PxP~[e^T] = log((e^0.5 + e^-0.5 + e^-1 + e^3) / 4) = 1.736452
    e = math.exp
    expected = 0.5 - math.log((e(0.5) + e(-0.5) + e(-1) + e(3)) / 4)
    assert math.isclose(expected, -1.236452, abs_tol=1e-6)
    assert math.isclose(dv_mi(SCORES).item(), expected, rel_tol=1e-6)


def slow_infonce(scores: torch.Tensor) -> float:
    n, _, n_pos = scores.shape
    s = scores.double().tolist()
    total = 0.0
    for j in range(n):
        for p in range(n_pos):
            cands = [s[j][j][p]] + [s[i][j][q] for i in range(n) if i != j for q in range(n_pos)]
            total += s[j][j][p] - math.log(sum(math.exp(v) for v in cands))
    return total / (n * n_pos)


@pytest.mark.parametrize("estimator", ["jsd", "infonce"])
def test_estimates_over_ranks_average_to_the_global_one(estimator) -> None:
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(4, 4, 3, generator=g)
    whole = mi_estimate(scores, estimator)
    per_rank = [mi_estimate(scores[:, 2 * r:2 * r + 2], estimator, offset=2 * r) for r in range(2)]
    assert torch.allclose(torch.stack(per_rank).mean(), whole, atol=1e-6)
    if estimator == "infonce":
        assert math.isclose(whole.item(), slow_infonce(scores), rel_tol=1e-6)


def test_prior_matching_losses_by_hand() -> None:
    # D logits: prior samples (0, 2), one encoding 1.
    # Discriminator: (sp(-0) + sp(-2)) / 2 + sp(1) = 0.410038 + 1.313262 = 1.723299
    # Encoder (non-saturating): sp(-1) = 0.313262
    loss = prior_discriminator_loss(torch.tensor([0.0, 2.0]), torch.tensor([1.0]))
    assert math.isclose(loss.item(), (sp(0) + sp(-2)) / 2 + sp(1), rel_tol=1e-6)
    assert math.isclose(loss.item(), 1.723299, abs_tol=1e-6)
    assert math.isclose(prior_encoder_loss(torch.tensor([1.0])).item(), 0.313262, abs_tol=1e-6)


def _tiny(project, **knobs):
    return load_config(write_params(project, **{**TINY_RUN, "method": "dim", "dim_global": 8, "score_dim": 16,
                                                **knobs}))


def test_backbone_without_feature_map_and_no_mi_term_are_config_errors(project, monkeypatch) -> None:
    class Flat(nn.Module):
        feature_dim = 4

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean((2, 3))

    with pytest.raises(ConfigError, match="alpha=0 and beta=0"):
        build_method(_tiny(project, alpha=0.0, beta=0.0), DataInfo(64))
    monkeypatch.setattr("selfsup.methods.base.build_backbone", lambda *a: Flat())
    with pytest.raises(ConfigError, match="feature map.*backbone.name=small_cnn"):
        build_method(_tiny(project), DataInfo(64))


@pytest.mark.parametrize("estimator", ["jsd", "infonce", "dv"])
def test_trainer_smoke_run(project, estimator) -> None:
    data = tiny_dataset(project / "data")
    cfg = _tiny(project, estimator=estimator, alpha=0.5, beta=1.0, gamma=0.1)
    trainer = image_loop(cfg, data, project / "ck")
    before = {k: v.clone() for k, v in trainer.task.method.state_dict().items()}
    history = trainer.fit()
    assert trainer.step == 12 and all(math.isfinite(r["loss"]) for r in history.rows)
    after = trainer.task.method.state_dict()
    for key in ("backbone.features.0.0.weight", "global_head.0.weight", "local_critic.body.0.weight",
                "local_global_critic.shortcut.weight", "map_critic.body.3.weight", "discriminator.4.weight"):
        assert key in after and not torch.equal(before[key], after[key]), key
    assert after["map_critic.shortcut.weight"].shape == (16, 32 * 2 * 2)  # flattened 2x2 map of 8w=32 channels

    method = trainer.task.method.eval()
    x = torch.randn(6, 3, 16, 16)
    with torch.no_grad():
        features = method.feature_extractor()(x)
        out = method(Views([x]), torch.arange(6))
    assert features.shape == (6, 32) and out.embedding.shape == (6, 8)
    assert set(out.losses) == {"loss", "mi_local", "mi_global", "prior_disc", "prior_enc"}
    expected = (-0.5 * out.losses["mi_global"] - out.losses["mi_local"]
                + 0.1 * (out.losses["prior_disc"] + out.losses["prior_enc"]))
    assert torch.allclose(out.losses["loss"], expected, atol=1e-5)


def test_local_only_dim_builds_no_global_critic(project) -> None:
    method = build_method(_tiny(project, gamma=0.0), DataInfo(64))
    keys = method.state_dict().keys()
    assert any(k.startswith("local_critic.") for k in keys)
    assert not any(k.startswith(("map_critic.", "discriminator.")) for k in keys)


def test_prior_terms_move_only_their_own_side(project) -> None:
    """D's loss reaches D but not the encoder; the encoder's loss reaches the encoder but not D."""
    method = build_method(_tiny(project, gamma=0.1), DataInfo(64))
    out = method(Views([torch.randn(4, 3, 16, 16)]), torch.arange(4))
    disc = list(method.discriminator.parameters())
    head = list(method.global_head.parameters())
    g_disc = torch.autograd.grad(out.losses["prior_disc"], disc + head, allow_unused=True, retain_graph=True)
    g_enc = torch.autograd.grad(out.losses["prior_enc"], disc + head, allow_unused=True)
    assert all(g is not None and g.abs().sum() > 0 for g in g_disc[:len(disc)])
    assert all(g is None for g in g_disc[len(disc):])
    assert all(g is None for g in g_enc[:len(disc)])
    assert all(g is not None for g in g_enc[len(disc):]) and g_enc[-1].abs().sum() > 0

"""Invariant and Spreading Instance Feature (Ye et al. 2019): the loss of Eq. (5) against a
hand-computed case and a slow loop, its DDP decomposition, and the method under the real training loop."""

import math

import torch
import torch.nn.functional as F

from conftest import TINY_RUN, tiny_dataset, write_params
from selfsup.methods import DataInfo, Views, build_method
from selfsup.methods.invaspread import invariance_spreading_loss
from selfsup.params import load_config
from selfsup.train import image_loop


def slow_invaspread(f: torch.Tensor, f_hat: torch.Tensor, tau: float) -> float:
    """Eq. (2)-(5) term by term, divided by the number of instances m."""
    f, f_hat = f.double(), f_hat.double()
    m = len(f)

    def p(i: int, query: torch.Tensor) -> float:  # P(i | x) with the originals f_k as weights
        return math.exp(float(f[i] @ query) / tau) / sum(math.exp(float(f[k] @ query) / tau) for k in range(m))

    total = -sum(math.log(p(i, f_hat[i])) for i in range(m))
    total -= sum(math.log(1 - p(i, f[j])) for i in range(m) for j in range(m) if j != i)
    return total / m


def test_invaspread_matches_hand_computed_case() -> None:
    # m = 3, tau = 1: f = (1,0), (0,1), (-1,0); f_hat = (1,0), (0.6,0.8), (0,-1).
    # Invariance: P(1|x^1) = e / (e + 1 + e^-1) = 0.665241
    #             P(2|x^2) = e^.8 / (e^.6 + e^.8 + e^-.6) = 0.484185
    #             P(3|x^3) = 1 / (1 + e^-1 + 1) = 0.422319
    # Spreading (x_j's denominator over f_k . f_j includes k = j):
    #   x_1: S = e + 1 + e^-1; P(2|x_1) = 1/S = 0.244728, P(3|x_1) = e^-1/S = 0.090031
    #   x_2: S = 1 + e + 1;    P(1|x_2) = P(3|x_2) = 1/S = 0.211942
    #   x_3: S = e^-1 + 1 + e; P(1|x_3) = 0.090031, P(2|x_3) = 0.244728
    # -log of those: 1.994890 in all; -log(1 - P): 0.280678, 0.094344, 0.238183, each twice = 1.226411.
    # J = 3.221300; J / 3 = 1.073767
    e = math.exp
    s13 = e(1) + 1 + e(-1)
    s2 = 2 + e(1)
    invariance = -(math.log(e(1) / s13) + math.log(e(0.8) / (e(0.6) + e(0.8) + e(-0.6))) + math.log(1 / (2 + e(-1))))
    spreading = -2 * (math.log(1 - 1 / s13) + math.log(1 - e(-1) / s13) + math.log(1 - 1 / s2))
    expected = (invariance + spreading) / 3
    assert math.isclose(expected, 1.073767, abs_tol=1e-6)
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    f_hat = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, -1.0]])
    assert math.isclose(invariance_spreading_loss(f, f_hat, temperature=1.0).item(), expected, rel_tol=1e-6)


def test_invaspread_matches_slow_loop() -> None:
    g = torch.Generator().manual_seed(0)
    f = F.normalize(torch.randn(6, 4, generator=g), dim=1)
    f_hat = F.normalize(torch.randn(6, 4, generator=g), dim=1)
    loss = invariance_spreading_loss(f, f_hat, temperature=0.3).item()
    assert math.isclose(loss, slow_invaspread(f, f_hat, 0.3), rel_tol=1e-5)


def test_gathered_weights_per_rank_average_to_the_global_loss() -> None:
    """Rank-local queries against the all-gathered originals average to the global-batch loss."""
    g = torch.Generator().manual_seed(1)
    f = F.normalize(torch.randn(8, 5, generator=g), dim=1)
    f_hat = F.normalize(torch.randn(8, 5, generator=g), dim=1)
    global_loss = invariance_spreading_loss(f, f_hat, temperature=0.1)
    per_rank = [invariance_spreading_loss(f[r * 4 : (r + 1) * 4], f_hat[r * 4 : (r + 1) * 4], f, offset=r * 4,
                                          temperature=0.1) for r in range(2)]
    assert torch.allclose(torch.stack(per_rank).mean(), global_loss, atol=1e-5)


def test_invariant_spread_features_score_lower_than_collapsed_ones() -> None:
    # Orthogonal instances with identical augmented copies beat a collapse to one point. tau = 0.1:
    # spread: P(i|x_hat_i) = e^10 / (e^10 + 3), P(i|x_j) = 1 / (e^10 + 3): J/m = 2 * 3 / (e^10 + 3) ~ 2.7e-4;
    # collapsed: every P = 1/4: J/m = log 4 + 3 log(4/3) = 2.249340.
    spread = torch.eye(4)
    collapsed = F.normalize(torch.ones(4, 4), dim=1)
    assert math.isclose(invariance_spreading_loss(spread, spread, temperature=0.1).item(), 6 / (math.exp(10) + 3),
                        rel_tol=1e-3)
    assert math.isclose(invariance_spreading_loss(collapsed, collapsed, temperature=0.1).item(),
                        math.log(4) + 3 * math.log(4 / 3), rel_tol=1e-5)


def test_trainer_smoke_run_and_feature_extractor(project) -> None:
    data = tiny_dataset(project / "data")
    linear_head = {**TINY_RUN, "projector": {"layers": 1, "out_dim": 8}}
    cfg = load_config(write_params(project, method="invaspread", **linear_head))
    trainer = image_loop(cfg, data, project / "ck")
    before = {k: v.clone() for k, v in trainer.task.method.state_dict().items()}
    trainer.fit()
    losses = [r["loss"] for r in trainer.history.rows]
    assert len(losses) == cfg.epochs and all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]
    after = trainer.task.method.state_dict()
    assert after.keys() == before.keys() and "projector.0.weight" in after
    assert not torch.equal(after["projector.0.weight"], before["projector.0.weight"])

    method = build_method(cfg, DataInfo(n_images=64))
    out = method(Views([torch.randn(6, 3, 16, 16), torch.randn(6, 3, 16, 16)]), torch.arange(6))
    assert out.embedding.shape == (6, 8) and torch.allclose(out.embedding.norm(dim=1), torch.ones(6), atol=1e-5)
    assert method.feature_extractor()(torch.randn(5, 3, 16, 16)).shape == (5, method.backbone.feature_dim)

"""Invariant and Spreading Instance Feature (Ye et al. 2019): the loss of Eq. (5) in the reference code's form
against a hand-computed case and a slow loop, its DDP decomposition, and the method under the real training loop."""

import math

import torch
import torch.nn.functional as F

from conftest import TINY_RUN, tiny_dataset, write_params
from selfsup.methods import DataInfo, Views, build_method
from selfsup.methods.invaspread import invariance_spreading_loss
from selfsup.params import load_config
from selfsup.train import image_loop


def slow_invaspread(z: torch.Tensor, tau: float) -> float:
    """The reference code's loss (BatchAverage.py, BatchCriterion with m = 1) term by term: z holds the
    first views then the second views; every row is an anchor scored against the other rows."""
    z = z.double()
    n = len(z)

    def p(j: int, a: int) -> float:  # P(j | a) over the candidates k != a
        return math.exp(float(z[j] @ z[a]) / tau) / sum(math.exp(float(z[k] @ z[a]) / tau) for k in range(n) if k != a)

    total = 0.0
    for a in range(n):
        pos = (a + n // 2) % n
        total -= math.log(p(pos, a))
        total -= sum(math.log(1 - p(j, a)) for j in range(n) if j not in (a, pos))
    return total / n


def test_invaspread_matches_hand_computed_case() -> None:
    # m = 2 images, tau = 1: z = [x_1, x_2, x_hat_1, x_hat_2] = (1,0), (0,1), (0.6,0.8), (-1,0).
    # Each anchor's denominator runs over the 3 other rows (itself excluded):
    #   x_1:     S = e^0 + e^.6 + e^-1 = 3.189998;  positive x_hat_1 (e^.6), negatives x_2 (1), x_hat_2 (e^-1)
    #   x_2:     S = 1 + e^.8 + 1     = 4.225541;  positive x_hat_2 (1),    negatives x_1 (1), x_hat_1 (e^.8)
    #   x_hat_1: S = e^.6+e^.8+e^-.6  = 4.596471;  positive x_1 (e^.6),     negatives x_2 (e^.8), x_hat_2 (e^-.6)
    #   x_hat_2: S = e^-1 + 1 + e^-.6 = 1.916691;  positive x_2 (1),        negatives x_1 (e^-1), x_hat_1 (e^-.6)
    # invariance -sum log(pos / S) = 3.577057; spreading -sum log(1 - neg / S) = 2.856306; L = 6.433363 / 4.
    e = math.exp
    s = [1 + e(0.6) + e(-1), 2 + e(0.8), e(0.6) + e(0.8) + e(-0.6), e(-1) + 1 + e(-0.6)]
    pos = [e(0.6), 1.0, e(0.6), 1.0]
    neg = [(1.0, e(-1)), (1.0, e(0.8)), (e(0.8), e(-0.6)), (e(-1), e(-0.6))]
    invariance = -sum(math.log(p / t) for p, t in zip(pos, s, strict=True))
    spreading = -sum(math.log(1 - v / t) for vs, t in zip(neg, s, strict=True) for v in vs)
    expected = (invariance + spreading) / 4
    assert math.isclose(invariance, 3.577057, abs_tol=1e-6) and math.isclose(spreading, 2.856306, abs_tol=1e-6)
    assert math.isclose(expected, 1.608341, abs_tol=1e-6)
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [-1.0, 0.0]])
    assert math.isclose(invariance_spreading_loss(z, temperature=1.0).item(), expected, rel_tol=1e-6)


def test_invaspread_matches_slow_loop() -> None:
    z = F.normalize(torch.randn(8, 4, generator=torch.Generator().manual_seed(0)), dim=1)
    assert math.isclose(invariance_spreading_loss(z, temperature=0.3).item(), slow_invaspread(z, 0.3), rel_tol=1e-5)


def test_the_spreading_term_is_not_inert() -> None:
    """At the paper's B = 128, tau = 0.1 on random unit features the spreading term is about 1 (the
    reference form: 0.3-1.0 per anchor); with the anchor itself kept among the candidates (exp(1 / tau)
    in every denominator) it would be about 2% of that."""
    z = F.normalize(torch.randn(256, 128, generator=torch.Generator().manual_seed(1)), dim=1)
    total = invariance_spreading_loss(z, temperature=0.1).item()
    rows = torch.arange(256)
    positive = (rows + 128) % 256
    logits = (z @ z.T / 0.1).fill_diagonal_(float("-inf"))
    invariance = -torch.log_softmax(logits, 1)[rows, positive].mean().item()
    spreading = total - invariance
    assert 0.3 < spreading < 1.5, spreading
    with_self = torch.softmax(z @ z.T / 0.1, 1)
    others = ~torch.eye(256, dtype=torch.bool) & ~F.one_hot(positive, 256).bool()
    assert -torch.log1p(-with_self[others]).sum().item() / 256 < 0.03 * spreading


def test_gathered_candidates_per_rank_average_to_the_global_loss() -> None:
    """Each rank's anchors against the all-gathered batch (rank order: each rank's first then second views)
    average to the loss of one process on the global batch."""
    g = torch.Generator().manual_seed(1)
    f, f_hat = (F.normalize(torch.randn(8, 5, generator=g), dim=1) for _ in range(2))
    global_loss = invariance_spreading_loss(torch.cat([f, f_hat]), temperature=0.1)
    blocks = [torch.cat([f[r * 4 : (r + 1) * 4], f_hat[r * 4 : (r + 1) * 4]]) for r in range(2)]
    gathered = torch.cat(blocks)
    per_rank = [invariance_spreading_loss(blocks[r], gathered, offset=r * 8, temperature=0.1) for r in range(2)]
    assert torch.allclose(torch.stack(per_rank).mean(), global_loss, atol=1e-5)


def test_the_candidates_are_constants() -> None:
    """Gradients reach the anchors only (the reference uses ``feat.data`` as classifier weights)."""
    z = F.normalize(torch.randn(6, 4, generator=torch.Generator().manual_seed(2)), dim=1).requires_grad_(True)
    candidates = z.detach().clone().requires_grad_(True)
    invariance_spreading_loss(z, candidates, temperature=0.2).backward()
    assert candidates.grad is None and z.grad.abs().sum() > 0


def test_invariant_spread_features_score_lower_than_collapsed_ones() -> None:
    # Two orthogonal instances whose views agree beat a collapse to one point. tau = 0.1, 2m = 4 rows
    # e_1, e_2, e_1, e_2: each anchor sees its positive at e^10 and two negatives at 1, so
    # L = log((e^10 + 2) / e^10) + 2 * -log(1 - 1 / (e^10 + 2)) ~ 3 / (e^10 + 2);
    # collapsed: all 3 candidates equal, P = 1/3: L = log 3 + 2 log(3/2) = 1.909543.
    spread = torch.eye(2).repeat(2, 1)
    collapsed = F.normalize(torch.ones(4, 2), dim=1)
    expected = math.log1p(2 / math.exp(10)) - 2 * math.log1p(-1 / (math.exp(10) + 2))
    assert math.isclose(invariance_spreading_loss(spread, temperature=0.1).item(), expected, rel_tol=1e-3)
    assert math.isclose(invariance_spreading_loss(collapsed, temperature=0.1).item(),
                        math.log(3) + 2 * math.log(1.5), rel_tol=1e-5)


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

"""NT-Xent (SimCLR Eq. 1) and Table 2's NT-Logistic and margin triplet against hand-computed cases and slow loops."""

import math

import pytest
import torch
import torch.nn.functional as F

from conftest import TINY_RUN, tiny_dataset, write_params
from selfsup.errors import ConfigError
from selfsup.methods.simclr import margin_triplet, nt_logistic, nt_xent
from selfsup.params import load_config
from selfsup.train import image_loop


def slow_nt_xent(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> float:
    """Eq. (1) term by term: l(i, j) for every anchor i, averaged over the 2N anchors."""
    z = torch.cat([z1, z2]).double()
    n2 = len(z)
    n = n2 // 2

    def sim(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(a @ b / (a.norm() * b.norm()))

    total = 0.0
    for i in range(n2):
        j = (i + n) % n2
        denom = sum(math.exp(sim(z[i], z[k]) / tau) for k in range(n2) if k != i)
        total += -math.log(math.exp(sim(z[i], z[j]) / tau) / denom)
    return total / n2


def test_nt_xent_matches_hand_computed_case() -> None:
    # Views: a1=(1,0), a2=(0,1) and their positives b1=(1,0), b2=(-1,0), tau = 1.
    # Cosines: a1.a2=0, a1.b1=1, a1.b2=-1, a2.b1=0, a2.b2=0, b1.b2=-1.
    e = math.exp
    l_a1 = -math.log(e(1) / (e(0) + e(1) + e(-1)))
    l_a2 = math.log(3.0)
    l_b1 = -math.log(e(1) / (e(1) + e(0) + e(-1)))
    l_b2 = -math.log(e(0) / (e(-1) + e(0) + e(-1)))
    expected = (l_a1 + l_a2 + l_b1 + l_b2) / 4
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [-1.0, 0.0]])
    assert math.isclose(nt_xent(z, temperature=1.0).item(), expected, rel_tol=1e-6)
    assert math.isclose(expected, 0.6163, abs_tol=1e-3)


def test_nt_xent_matches_slow_loop_and_is_scale_invariant() -> None:
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    loss = nt_xent(torch.cat([z1, z2]), temperature=0.3).item()
    assert math.isclose(loss, slow_nt_xent(z1, z2, 0.3), rel_tol=1e-5)
    scaled = nt_xent(torch.cat([3 * z1, 0.5 * z2]), temperature=0.3).item()
    assert math.isclose(loss, scaled, rel_tol=1e-5)


def test_nt_xent_with_gathered_candidates_equals_global_loss() -> None:
    """Rank-local anchors against all-gathered candidates average to the global loss."""
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
    global_loss = nt_xent(torch.cat([z1, z2]), temperature=0.5)
    blocks = [torch.cat([z1[:4], z2[:4]]), torch.cat([z1[4:], z2[4:]])]
    candidates = torch.cat(blocks)
    per_rank = [nt_xent(b, candidates, offset=r * 8, temperature=0.5) for r, b in enumerate(blocks)]
    assert torch.allclose(torch.stack(per_rank).mean(), global_loss, atol=1e-6)


def test_nt_xent_learns_a_toy_problem() -> None:
    """A linear encoder trained with NT-Xent separates noisy copies of 16 prototypes."""
    torch.manual_seed(0)
    protos = torch.randn(16, 8)
    enc = torch.nn.Linear(8, 8)
    opt = torch.optim.SGD(enc.parameters(), lr=0.5)
    losses = []
    for _ in range(150):
        x1 = protos + 0.3 * torch.randn_like(protos)
        x2 = protos + 0.3 * torch.randn_like(protos)
        loss = nt_xent(torch.cat([enc(x1), enc(x2)]), temperature=0.2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 0.85 * sum(losses[:10]) / 10
    z = F.normalize(enc(protos + 0.3 * torch.randn_like(protos)), dim=1)
    nearest = (z @ F.normalize(enc(protos), dim=1).T).argmax(1)
    assert (nearest == torch.arange(16)).float().mean() > 0.9


# -- Table 2's other objectives ---------------------------------------------------------------------

# A 4x3 batch: two images, views a1, a2 (first view) then b1, b2 (second view); positives (a1, b1),
# (a2, b2). Rows are rescaled on purpose: every objective l2-normalises its inputs first.
#   a1 = (1, 0, 0), a2 = (0, 2, 0) -> (0, 1, 0), b1 = (1, 1, 0) -> (1, 1, 0)/sqrt 2, b2 = (0, 0, 3) -> (0, 0, 1)
# Cosines (c = 1/sqrt 2): a1.a2 = 0, a1.b1 = c, a1.b2 = 0, a2.b1 = c, a2.b2 = 0, b1.b2 = 0.
# Per anchor (positive s+; negatives s-): a1 (c; 0, 0), a2 (0; 0, c), b1 (c; c, 0), b2 (0; 0, 0).
BATCH_4X3 = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 3.0]])
C = 1 / math.sqrt(2)


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_nt_xent_on_the_4x3_batch() -> None:
    # l = -log(e^{s+} / (e^{s+} + sum e^{s-})), tau = 1
    e = math.exp
    expected = (-math.log(e(C) / (e(C) + 2)) - math.log(1 / (2 + e(C)))
                - math.log(e(C) / (2 * e(C) + 1)) + math.log(3)) / 4
    assert math.isclose(expected, 1.022904, abs_tol=1e-6)
    assert math.isclose(nt_xent(BATCH_4X3, temperature=1.0).item(), expected, rel_tol=1e-6)


def test_nt_logistic_on_the_4x3_batch() -> None:
    # -log sigmoid(x) = softplus(-x), -log sigmoid(-x) = softplus(x); per anchor the positive term plus
    # the mean of the negative terms. With tau = 1 (log 2 = softplus(0)):
    #   a1: softplus(-c) + log 2          a2: log 2 + (log 2 + softplus(c)) / 2
    #   b1: softplus(-c) + (softplus(c) + log 2) / 2       b2: log 2 + log 2
    ln2 = math.log(2)
    for tau, value in ((1.0, 1.343836), (0.5, 1.383204)):
        sp_pos, sp_neg = _softplus(-C / tau), _softplus(C / tau)
        expected = (sp_pos + ln2 + ln2 + (ln2 + sp_neg) / 2 + sp_pos + (sp_neg + ln2) / 2 + 2 * ln2) / 4
        assert math.isclose(expected, value, abs_tol=1e-6)
        assert math.isclose(nt_logistic(BATCH_4X3, temperature=tau).item(), expected, rel_tol=1e-6)


def test_margin_triplet_on_the_4x3_batch() -> None:
    # max(s- - s+ + m, 0) with m = 0.5, averaged over each anchor's two negatives:
    #   a1: max(-c + .5, 0) = 0 twice -> 0          a2: (0.5 + (c + 0.5)) / 2 = 0.853553
    #   b1: (max(c - c + .5, 0) + max(0 - c + .5, 0)) / 2 = 0.25                   b2: 0.5
    expected = (0.0 + (1.0 + C) / 2 + 0.25 + 0.5) / 4
    assert math.isclose(expected, 0.400888, abs_tol=1e-6)
    assert math.isclose(margin_triplet(BATCH_4X3, margin=0.5).item(), expected, rel_tol=1e-6)
    # m = 0 only penalises negatives more similar than the positive: a2's negative b1 (c > 0), i.e.
    # a2: (max(0 - 0, 0) + max(c - 0, 0)) / 2 = c / 2, every other anchor 0 -> mean c / 8
    assert math.isclose(margin_triplet(BATCH_4X3, margin=0.0).item(), C / 8, rel_tol=1e-6)


def _slow_table2(z: torch.Tensor, objective: str, tau: float, m: float) -> float:
    """Table 2 term by term: every anchor against its positive and each of its negatives."""
    z = z.double()
    n2 = len(z)
    total = 0.0
    for i in range(n2):
        j = (i + n2 // 2) % n2
        negatives = [k for k in range(n2) if k not in (i, j)]
        cos = [float(z[i] @ z[k] / (z[i].norm() * z[k].norm())) for k in range(n2)]
        if objective == "nt_logistic":
            pos = -math.log(1 / (1 + math.exp(-cos[j] / tau)))
            neg = [-math.log(1 / (1 + math.exp(cos[k] / tau))) for k in negatives]
            total += pos + sum(neg) / len(neg)
        else:
            total += sum(max(cos[k] - cos[j] + m, 0.0) for k in negatives) / len(negatives)
    return total / n2


@pytest.mark.parametrize("objective", ["nt_logistic", "margin_triplet"])
def test_table2_objectives_match_slow_loop(objective: str) -> None:
    g = torch.Generator().manual_seed(2)
    z = torch.randn(10, 4, generator=g)
    got = nt_logistic(z, temperature=0.3) if objective == "nt_logistic" else margin_triplet(z, margin=0.8)
    assert math.isclose(got.item(), _slow_table2(z, objective, 0.3, 0.8), rel_tol=1e-5)


@pytest.mark.parametrize("loss", [lambda z, c, o: nt_logistic(z, c, o, temperature=0.2),
                                  lambda z, c, o: margin_triplet(z, c, o, margin=0.4)])
def test_table2_objectives_with_gathered_candidates_equal_global_loss(loss) -> None:
    g = torch.Generator().manual_seed(3)
    z1, z2 = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
    global_loss = loss(torch.cat([z1, z2]), None, 0)
    blocks = [torch.cat([z1[:4], z2[:4]]), torch.cat([z1[4:], z2[4:]])]
    per_rank = [loss(b, torch.cat(blocks), r * 8) for r, b in enumerate(blocks)]
    assert torch.allclose(torch.stack(per_rank).mean(), global_loss, atol=1e-6)


@pytest.mark.parametrize("objective", ["nt_logistic", "margin_triplet"])
def test_trainer_runs_simclr_with_each_objective(project, objective: str) -> None:
    data = tiny_dataset(project / "data")
    cfg = load_config(write_params(project, method="simclr", objective=objective, margin=0.8,
                                   **{**TINY_RUN, "epochs": 1}))
    assert (cfg.knobs.objective, cfg.knobs.margin) == (objective, 0.8)
    trainer = image_loop(cfg, data, project / "ck")
    before = {k: v.clone() for k, v in trainer.task.method.projector.state_dict().items()}
    history = trainer.fit()
    assert math.isfinite(history.rows[-1]["loss"]) and history.rows[-1]["loss"] > 0
    after = trainer.task.method.projector.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    feats = trainer.task.method.feature_extractor()(torch.randn(3, 3, 16, 16))
    assert feats.shape == (3, trainer.task.method.backbone.feature_dim)


def test_unknown_objective_is_refused(project) -> None:
    with pytest.raises(ConfigError, match="objective"):
        load_config(write_params(project, method="simclr", objective="infonce"))


def test_nt_xent_hard_negatives_join_each_images_denominator() -> None:
    """BG_Swaps: one more negative h_i in the denominator of both anchors of image i (slow loop)."""
    torch.manual_seed(0)
    z, hard, tau = torch.randn(6, 3), torch.randn(3, 3), 0.5
    u, h = torch.nn.functional.normalize(z, dim=1), torch.nn.functional.normalize(hard, dim=1)
    total = 0.0
    for a in range(6):
        pos = math.exp(float(u[a] @ u[(a + 3) % 6]) / tau)
        denom = sum(math.exp(float(u[a] @ u[k]) / tau) for k in range(6) if k != a)
        denom += math.exp(float(u[a] @ h[a % 3]) / tau)
        total += -math.log(pos / denom)
    assert nt_xent(z, temperature=tau, hard_negatives=hard).item() == pytest.approx(total / 6, rel=1e-5)
    assert nt_xent(z, temperature=tau, hard_negatives=hard) > nt_xent(z, temperature=tau)

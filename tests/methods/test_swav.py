"""SwAV: Sinkhorn codes (Eq. 3, App. A.1) and the swapped prediction loss (Eq. 1-2) by hand, and
the method's prototypes, prototype freeze and queue inside the real training loop."""

import math

import pytest
import torch
import torch.nn.functional as F

from conftest import TINY_RUN, tiny_dataset, write_params
from selfsup.methods import DataInfo, Views, build_method
from selfsup.methods.swav import sinkhorn, swapped_prediction_loss
from selfsup.params import load_config
from selfsup.train import image_loop

MULTI_CROP = {"size": 16, "multi_crop": {"n_small": 2, "size": 8}}


def slow_sinkhorn(scores: list[list[float]], eps: float, iterations: int) -> list[list[float]]:
    """Algorithm 1 of the paper, entry by entry on a K x B list of lists."""
    b, k = len(scores), len(scores[0])
    q = [[math.exp(scores[j][i] / eps) for j in range(b)] for i in range(k)]
    total = sum(map(sum, q))
    q = [[v / total for v in row] for row in q]
    for _ in range(iterations):
        q = [[v / sum(row) / k for v in row] for row in q]
        cols = [sum(q[i][j] for i in range(k)) for j in range(b)]
        q = [[q[i][j] / cols[j] / b for j in range(b)] for i in range(k)]
    return [[q[i][j] * b for i in range(k)] for j in range(b)]


def test_sinkhorn_2x2_by_hand() -> None:
    # exp(scores / eps): sample 1 -> (3, 1), sample 2 -> (1, 1); as K x B: [[3, 1], [1, 1]] / 6.
    # Iteration 1: prototype rows -> [3/8, 1/8], [1/4, 1/4]; sample columns -> [3/5, 2/5], [1/3, 2/3].
    # Iteration 2: rows (sums 7/15, 8/15) -> [9/28, 5/28], [3/16, 5/16]; columns -> [12/19, 7/19], [4/11, 7/11].
    eps = 0.05
    scores = eps * torch.log(torch.tensor([[3.0, 1.0], [1.0, 1.0]]))
    one = sinkhorn(scores, eps, iterations=1)
    two = sinkhorn(scores, eps, iterations=2)
    assert torch.allclose(one, torch.tensor([[3 / 5, 2 / 5], [1 / 3, 2 / 3]]), atol=1e-6)
    assert torch.allclose(two, torch.tensor([[12 / 19, 7 / 19], [4 / 11, 7 / 11]]), atol=1e-6)
    # The prototype marginals approach B/K = 1: 208/209 and 210/209 after two iterations.
    assert torch.allclose(two.sum(0), torch.tensor([208 / 209, 210 / 209]), atol=1e-6)


SCORES_4x3 = [[0.9, 0.1, -0.3], [0.8, 0.2, 0.0], [0.7, -0.5, 0.4], [0.6, 0.3, -0.1]]


def test_sinkhorn_4x3_matches_algorithm_and_equipartitions() -> None:
    scores = torch.tensor(SCORES_4x3)
    codes = sinkhorn(scores, epsilon=0.5, iterations=3)
    assert torch.allclose(codes.double(), torch.tensor(slow_sinkhorn(SCORES_4x3, 0.5, 3), dtype=torch.float64),
                          atol=1e-6)
    assert torch.allclose(codes.sum(1), torch.ones(4), atol=1e-6)  # each sample's assignment sums to 1
    # Every sample prefers prototype 0, yet the converged codes split the mass equally: B/K = 4/3 each.
    converged = sinkhorn(scores, epsilon=0.5, iterations=200)
    assert torch.allclose(converged.sum(1), torch.ones(4), atol=1e-4)
    assert torch.allclose(converged.sum(0), torch.full((3,), 4 / 3), atol=1e-4)
    assert scores.argmax(1).eq(0).all() and converged[:, 1:].sum() > 1.5
    # Scores shifted by a constant give the same codes (the stabilising max subtraction is exact).
    assert torch.allclose(sinkhorn(scores + 3.0, 0.5, 3), codes, atol=1e-6)


def test_swapped_prediction_loss_by_hand() -> None:
    # Two crops, one sample, two prototypes, tau = 1: crop 1 scores (1, 0), crop 2 scores (0, 0),
    # codes q1 = (1, 0), q2 = (1/2, 1/2).
    # l(z2, q1) = -log softmax(0, 0)_1 = log 2; l(z1, q2) = -(1/2)(1 - log(1+e)) - (1/2)(-log(1+e))
    # = log(1 + e) - 1/2; the loss is their mean, 0.753204.
    scores = [torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]])]
    codes = [torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 0.5]])]
    expected = (math.log(2) + math.log(1 + math.e) - 0.5) / 2
    assert math.isclose(swapped_prediction_loss(scores, codes, temperature=1.0).item(), expected, rel_tol=1e-6)
    assert math.isclose(expected, 0.753204, abs_tol=1e-6)


def test_swapped_prediction_loss_multi_crop_matches_slow_loop() -> None:
    g = torch.Generator().manual_seed(0)
    scores = [torch.randn(3, 4, generator=g) for _ in range(4)]  # 2 large + 2 small crops
    codes = [torch.softmax(torch.randn(3, 4, generator=g), 1) for _ in range(2)]
    tau = 0.5
    total = 0.0
    for s in range(2):
        sub = 0.0
        for t in range(4):
            if t == s:
                continue
            for b in range(3):
                norm = sum(math.exp(float(x) / tau) for x in scores[t][b])
                sub -= sum(float(codes[s][b, k]) * (float(scores[t][b, k]) / tau - math.log(norm))
                           for k in range(4)) / 3
        total += sub / 3
    assert math.isclose(swapped_prediction_loss(scores, codes, tau).item(), total / 2, rel_tol=1e-5)


def _method(project, **knobs):  # noqa: ANN001, ANN202
    cfg = load_config(write_params(project, method="swav", **{**TINY_RUN, "views": MULTI_CROP, **knobs}))
    torch.manual_seed(0)
    return build_method(cfg, DataInfo(n_images=16)), cfg


def _views(b: int = 4) -> Views:
    g = torch.Generator().manual_seed(1)
    return Views([torch.randn(b, 3, 16, 16, generator=g) for _ in range(2)],
                 [torch.randn(b, 3, 8, 8, generator=g) for _ in range(2)])


def _projections(method, views: Views) -> torch.Tensor:  # noqa: ANN001
    with torch.no_grad():
        feats = torch.cat([method.backbone(torch.cat(views.large)), method.backbone(torch.cat(views.small))])
        return F.normalize(method.projector(feats), dim=1)


def test_prototypes_are_unit_rows_after_a_forward(project) -> None:
    method, _ = _method(project, n_prototypes=5)
    with torch.no_grad():
        method.prototypes.weight.mul_(7.0)
    out = method(_views(), torch.arange(4))
    assert torch.isfinite(out.losses["loss"])
    assert torch.allclose(method.prototypes.weight.norm(dim=1), torch.ones(5), atol=1e-6)
    assert method.prototypes.bias is None and out.embedding.shape == (4, 8)


def test_queue_fills_then_joins_sinkhorn(project) -> None:
    # batch_size 16 of 16 images: one step per epoch; the queue starts at epoch 1 and holds 8 rows.
    method, _ = _method(project, n_prototypes=5, queue_length=8, queue_start_epoch=1, batch_size=16)
    views = _views()
    method(views, torch.arange(4))
    assert method.queue.abs().sum() == 0 and int(method.queue_filled) == 0  # epoch 0: not started
    method.steps_done.fill_(1)
    z1 = _projections(method, views)
    method(views, torch.arange(4))
    assert torch.allclose(method.queue[0, :4], z1[:4], atol=1e-6)
    assert torch.allclose(method.queue[1, :4], z1[4:8], atol=1e-6)
    assert method.queue[:, 4:].abs().sum() == 0 and int(method.queue_ptr) == 4 and int(method.queue_filled) == 4
    views2 = views.map(lambda v: v.flip(0))
    z2 = _projections(method, views2)
    method(views2, torch.arange(4))
    assert torch.allclose(method.queue[0], torch.cat([z1[:4], z2[:4]]), atol=1e-6)
    assert int(method.queue_ptr) == 0 and int(method.queue_filled) == 8
    # Full: the batch's codes come from Sinkhorn over [queue; batch]; the oldest rows are replaced.
    # A queue sitting on prototype 0 takes its share of the mass, pushing the batch to the others.
    c = F.normalize(method.prototypes.weight.detach(), dim=1)
    method.queue.copy_(c[0].expand_as(method.queue))
    queue_before = method.queue.clone()
    views3 = views.map(lambda v: v * 0.5)
    z3 = _projections(method, views3)
    scores = [s for s in (z3 @ c.T).split(4)]
    codes = [sinkhorn(torch.cat([queue_before[i] @ c.T, scores[i]]), 0.05, 3)[-4:] for i in range(2)]
    expected = swapped_prediction_loss(scores, codes, 0.1)
    without_queue = swapped_prediction_loss(scores, [sinkhorn(s, 0.05, 3) for s in scores[:2]], 0.1)
    loss = method(views3, torch.arange(4)).losses["loss"]
    assert torch.allclose(loss, expected, atol=1e-5) and not torch.allclose(loss, without_queue, atol=1e-2)
    assert torch.allclose(method.queue[0], torch.cat([z3[:4], queue_before[0, 4:]]), atol=1e-6)
    assert int(method.queue_ptr) == 4


def test_trainer_run_freezes_prototypes_fills_queue_and_saves_state(project) -> None:
    data = tiny_dataset(project / "data")
    # 64 images / 16 = 4 steps per epoch, 3 epochs; queue from epoch 1 (filled by steps 4-5, used from 6).
    cfg = load_config(write_params(project, method="swav", **{
        **TINY_RUN, "views": MULTI_CROP, "n_prototypes": 6, "freeze_prototypes_iters": 3,
        "queue_length": 32, "queue_start_epoch": 1}))
    trainer = image_loop(cfg, data, project / "ck")
    initial = F.normalize(trainer.task.method.prototypes.weight.detach().clone(), dim=1)
    trainer.fit(until=3)
    assert torch.allclose(trainer.task.method.prototypes.weight, initial, atol=1e-6)  # frozen for steps 0-2
    assert int(trainer.task.method.queue_filled) == 0
    trainer.fit()
    assert not torch.allclose(trainer.task.method.prototypes.weight, initial, atol=1e-3)
    assert all(math.isfinite(r["loss"]) for r in trainer.history.rows) and len(trainer.history.rows) == 3
    state = trainer.task.method.state_dict()
    assert {"prototypes.weight", "queue", "queue_ptr", "queue_filled", "steps_done"} <= set(state)
    assert int(state["steps_done"]) == 12 and int(state["queue_filled"]) == 32 and int(state["queue_ptr"]) == 0
    assert torch.allclose(state["queue"].norm(dim=2), torch.ones(2, 32), atol=1e-5)  # unit projections
    fresh = build_method(cfg, trainer.task.info)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.queue, state["queue"]) and int(fresh.steps_done) == 12
    extractor = trainer.task.method.feature_extractor().eval()
    with torch.no_grad():
        feats = extractor(torch.randn(5, 3, 16, 16))
    assert feats.shape == (5, trainer.task.method.backbone.feature_dim)


@pytest.mark.parametrize("iterations", [1, 3])
def test_sinkhorn_rows_are_assignments_on_random_scores(iterations: int) -> None:
    g = torch.Generator().manual_seed(iterations)
    scores = F.normalize(torch.randn(32, 8, generator=g), dim=1) @ F.normalize(torch.randn(10, 8, generator=g), dim=1).T
    codes = sinkhorn(scores, 0.05, iterations)
    assert codes.shape == (32, 10) and (codes >= 0).all()
    assert torch.allclose(codes.sum(1), torch.ones(32), atol=1e-5)

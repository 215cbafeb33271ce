"""MoCo v1/v2: InfoNCE (Eq. 1) and the FIFO queue by hand, Shuffling BN, the momentum update
(Eq. 2), and training runs of the real training loop."""

from __future__ import annotations

import logging
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import TINY_RUN, tiny_dataset, write_params
from selfsup.errors import ConfigError
from selfsup.methods import DataInfo, Views, build_method
from selfsup.methods.moco import MoCo, MoCoV1, enqueue, moco_infonce, shuffle_bn_encode
from selfsup.params import load_config
from selfsup.train import image_loop

SMALL = {**TINY_RUN, "queue_size": 48, "shuffle_bn_splits": 4}


def slow_infonce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, tau: float) -> float:
    """Eq. (1) term by term for every query, averaged."""
    total = 0.0
    for qi, ki in zip(q.double(), k.double(), strict=True):
        qi, ki = qi / qi.norm(), ki / ki.norm()
        pos = math.exp(float(qi @ ki) / tau)
        total += -math.log(pos / (pos + sum(math.exp(float(qi @ kj) / tau) for kj in queue.double())))
    return total / len(q)


def test_infonce_matches_hand_computed_2x3_case() -> None:
    # q1=(1,0), q2=(0,1); positives k1=(1,0), k2=(.6,.8); queue (0,1), (-1,0), (.6,-.8); tau = 0.5.
    # q1: [q.k+, q.queue] / tau = [2, 0, -2, 1.2] -> -log(e^2 / (e^2 + 1 + e^-2 + e^1.2)) = 0.471864
    # q2: [1.6, 2, 0, -1.6] -> -log(e^1.6 / (e^1.6 + e^2 + 1 + e^-1.6)) = 1.005943; mean 0.738903.
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    k = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    queue = torch.tensor([[0.0, 1.0], [-1.0, 0.0], [0.6, -0.8]])
    assert math.isclose(moco_infonce(q, k, queue, 0.5).item(), 0.738903, abs_tol=1e-5)
    # Queries and keys are normalised inside: scaling them changes nothing.
    assert math.isclose(moco_infonce(3 * q, 0.5 * k, queue, 0.5).item(), 0.738903, abs_tol=1e-5)


def test_infonce_matches_slow_loop() -> None:
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    queue = F.normalize(torch.randn(7, 4, generator=g), dim=1)
    assert math.isclose(moco_infonce(q, k, queue, 0.2).item(), slow_infonce(q, k, queue, 0.2), rel_tol=1e-5)


def test_enqueue_is_fifo_with_wraparound() -> None:
    queue = torch.full((6, 2), -1.0)
    assert enqueue(queue, 0, torch.tensor([[1.0, 1.0], [2.0, 2.0]])) == 2
    assert queue.tolist() == [[1, 1], [2, 2], [-1, -1], [-1, -1], [-1, -1], [-1, -1]]
    assert enqueue(queue, 2, torch.tensor([[3.0, 3.0], [4.0, 4.0]])) == 4
    assert enqueue(queue, 4, torch.tensor([[5.0, 5.0], [6.0, 6.0]])) == 0  # full: the pointer wraps
    assert queue.tolist() == [[1, 1], [2, 2], [3, 3], [4, 4], [5, 5], [6, 6]]
    assert enqueue(queue, 0, torch.tensor([[7.0, 7.0], [8.0, 8.0]])) == 2
    # The fourth batch replaced the oldest one (rows 0-1); the others are still there in order.
    assert queue.tolist() == [[7, 7], [8, 8], [3, 3], [4, 4], [5, 5], [6, 6]]
    with pytest.raises(ConfigError, match="multiple"):
        enqueue(queue, 0, torch.zeros(4, 2))


def test_split_batch_shuffle_equals_encoding_chunks_by_hand() -> None:
    torch.manual_seed(0)
    enc = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    x = torch.randn(8, 3)
    perm = torch.tensor([5, 2, 7, 0, 3, 6, 1, 4])
    out = shuffle_bn_encode(enc, x, perm, splits=2)
    first, second = enc(x[[5, 2, 7, 0]]), enc(x[[3, 6, 1, 4]])  # BN statistics of each chunk
    expected = torch.empty(8, 4)
    for row, image in enumerate([5, 2, 7, 0]):
        expected[image] = first[row]
    for row, image in enumerate([3, 6, 1, 4]):
        expected[image] = second[row]
    assert torch.allclose(out, expected, atol=1e-6)
    assert not torch.allclose(out, enc(x), atol=1e-3)  # one batch would mix the statistics
    # Running averages: only the first chunk's update is kept (rank 0's under DDP), from the initial
    # (0, 1) with BN momentum 0.1: 0.1 * mean of the first chunk's pre-BN activations.
    enc[1].reset_running_stats()
    shuffle_bn_encode(enc, x, perm, splits=2)
    first_mean = enc[0](x[[5, 2, 7, 0]]).mean(0)
    assert torch.allclose(enc[1].running_mean, 0.1 * first_mean.detach(), atol=1e-6)
    assert int(enc[1].num_batches_tracked) == 1


def _method(project, **values) -> MoCo:  # noqa: ANN001
    torch.manual_seed(0)
    return build_method(load_config(write_params(project, method="moco", **{**SMALL, **values})), DataInfo(64))


def test_method_keys_and_queries_use_per_chunk_batchnorm(project) -> None:
    method = _method(project)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 3, 16, 16, generator=g)
    perm = method.permutation(16)
    assert torch.equal(perm, _method(project).permutation(16))  # drawn from the seed and step only
    manual = torch.cat([method.key_projector(method.key_backbone(c)) for c in x[perm].chunk(4)])[perm.argsort()]
    assert torch.allclose(method.keys(x), F.normalize(manual, dim=1), atol=1e-5)
    chunks = torch.cat([method.projector(method.backbone(c)) for c in x.chunk(4)])
    assert torch.allclose(method.queries(x), chunks, atol=1e-5)
    assert not torch.allclose(method.queries(x), method.projector(method.backbone(x)), atol=1e-3)
    method.shuffle_step += 1
    assert not torch.equal(method.permutation(16), perm)


def test_forward_computes_the_loss_on_the_old_queue_then_enqueues_the_keys(project) -> None:
    # Without BatchNorm the keys do not depend on the shuffle, so they can be computed directly.
    method = _method(project, backbone={"name": "small_cnn", "width": 4, "norm": "none"},
                     projector={"layers": 2, "hidden_dim": 16, "out_dim": 8, "hidden_bn": False})
    g = torch.Generator().manual_seed(2)
    views = Views([torch.randn(16, 3, 16, 16, generator=g) for _ in range(2)])
    old = method.queue.clone()
    out = method(views, torch.arange(16))
    q = method.projector(method.backbone(views.large[0]))
    k = F.normalize(method.key_projector(method.key_backbone(views.large[1])), dim=1)
    assert math.isclose(out.losses["loss"].item(), moco_infonce(q, k, old, 0.2).item(), rel_tol=1e-5)
    assert torch.allclose(method.queue[:16], k, atol=1e-6)
    assert torch.equal(method.queue[16:], old[16:])
    assert int(method.queue_ptr) == 16 and int(method.shuffle_step) == 1
    out.losses["loss"].backward()
    assert method.backbone.features[0][0].weight.grad is not None
    assert all(p.grad is None for p in method.key_backbone.parameters())


def test_momentum_update_is_m_target_plus_one_minus_m_online(project) -> None:
    method = _method(project, momentum=0.75)
    assert method.scheduled_values(0, 10) == method.scheduled_values(9, 10) == {"ema_momentum": 0.75}  # constant
    with torch.no_grad():
        for p in method.backbone.parameters():
            p.add_(1.0)
        method.projector[-1].bias.fill_(1.0)
        method.key_projector[-1].bias.fill_(3.0)
        for b in method.backbone.buffers():
            b.add_(5)
    online = {k: v.clone() for k, v in method.backbone.state_dict().items()}
    target = {k: v.clone() for k, v in method.key_backbone.state_dict().items()}
    method.on_step_end(0, 10)
    # 0.75 * 3 + 0.25 * 1 = 2.5
    assert method.key_projector[-1].bias.tolist() == [2.5] * 8
    for name, p in method.key_backbone.named_parameters():
        assert torch.allclose(p, 0.75 * target[name] + 0.25 * online[name], atol=1e-7), name
    # parameters only, as the reference code: the key encoder keeps its own BatchNorm statistics
    buffers = dict(method.key_backbone.named_buffers())
    assert buffers and all(torch.equal(b, target[name]) for name, b in buffers.items())


def test_queue_size_is_validated(project, caplog) -> None:
    with pytest.raises(ConfigError, match="queue_size=40 must be a multiple of batch_size=16"):
        _method(project, queue_size=40)
    with pytest.raises(ConfigError, match="shuffle_bn_splits=3"):
        _method(project, shuffle_bn_splits=3)
    with caplog.at_level(logging.WARNING):
        _method(project, queue_size=128)
    assert "larger than the 64 pretraining images" in caplog.text


@pytest.mark.parametrize("method", ["moco", "mocov1"])
def test_trainer_smoke_run_fills_the_queue_and_resumes_exactly(project, method) -> None:
    data = tiny_dataset(project / "data")
    cfg = load_config(write_params(project, method=method, **SMALL))
    full = image_loop(cfg, data, project / "ck_full")
    assert isinstance(full.task.method, MoCoV1 if method == "mocov1" else MoCo)
    initial = full.task.method.queue.clone()
    full.fit()
    assert all(math.isfinite(r["loss"]) for r in full.history.rows)
    m = full.task.method
    # 12 steps of 16 keys into a queue of 48: every row rewritten, pointer back at 12*16 mod 48 = 0.
    assert int(m.shuffle_step) == 12 and int(m.queue_ptr) == 0
    assert not torch.isclose(m.queue, initial).all(1).any()
    assert torch.allclose(m.queue.norm(dim=1), torch.ones(48), atol=1e-5)
    key = dict(m.key_backbone.named_parameters())
    moved = [n for n, p in m.backbone.named_parameters() if not torch.equal(p, key[n])]
    assert moved  # the key encoder lags the query encoder

    state = m.state_dict()
    assert {"queue", "queue_ptr", "shuffle_step"} <= state.keys()
    assert any(k.startswith("key_backbone.") for k in state) and any(k.startswith("key_projector.") for k in state)

    first = image_loop(cfg, data, project / "ck_split")
    first.fit(until=7)
    second = image_loop(cfg, data, project / "ck_split")
    assert second.try_resume() and second.step == 5
    second.fit()
    a, b = full.task.method.state_dict(), second.task.method.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)

    feats = m.feature_extractor().eval()(torch.randn(5, 3, 16, 16))
    assert feats.shape == (5, m.backbone.feature_dim)


def test_mocov1_defaults_are_the_v1_paper(project) -> None:
    cfg = load_config(write_params(project, method="mocov1", preset="paper"))
    assert cfg.knobs.temperature == 0.07 and cfg.knobs.momentum == 0.999 and cfg.knobs.queue_size == 65536
    assert cfg.projector.layers == 1 and cfg.projector.out_dim == 128
    assert cfg.optim.schedule == "step" and cfg.optim.lr_steps == (0.6, 0.8) and cfg.views.blur.p == 0.0
    v2 = load_config(write_params(project, method="moco", preset="paper"))
    assert v2.knobs.temperature == 0.2 and v2.projector.layers == 2 and v2.optim.schedule == "cosine"


def test_infonce_hard_negative_by_hand() -> None:
    # The 2x3 case above with a hard negative key per query: h1 = (0, 1) for q1 adds e^(0/0.5) = 1,
    # h2 = (0, 1) for q2 adds e^(1/0.5) = e^2:
    # q1: -log(e^2 / (e^2 + 1 + e^-2 + e^1.2 + 1)) = -log(7.3891 / 12.8446) = 0.552916
    # q2: -log(e^1.6 / (e^1.6 + e^2 + 1 + e^-1.6 + e^2)) = -log(4.9530 / 20.9332) = 1.441329; mean 0.997123.
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    k = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    queue = torch.tensor([[0.0, 1.0], [-1.0, 0.0], [0.6, -0.8]])
    hard = torch.tensor([[0.0, 2.0], [0.0, 1.0]])  # normalised inside
    expected = (-math.log(math.e**2 / (math.e**2 + 1 + math.e**-2 + math.e**1.2 + 1))
                - math.log(math.e**1.6 / (math.e**1.6 + math.e**2 + 1 + math.e**-1.6 + math.e**2))) / 2
    assert math.isclose(expected, 0.997123, abs_tol=1e-5)
    assert math.isclose(moco_infonce(q, k, queue, 0.5, hard).item(), expected, abs_tol=1e-5)

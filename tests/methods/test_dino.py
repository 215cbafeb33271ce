"""DINO: the loss (Eq. 3 / Algorithm 1), centre (Eq. 4) and teacher temperature by hand, and the
teacher's EMA, the last-layer freeze and the centre inside the real training loop."""

import math

import numpy as np
import pytest
import torch

from conftest import TINY_RUN, tiny_dataset, write_params
from selfsup.loop import Loop
from selfsup.methods import DataInfo, Views, build_method
from selfsup.methods.dino import clip_gradients_, dino_loss, teacher_temperature, update_center
from selfsup.params import load_config
from selfsup.schedules import cosine_momentum
from selfsup.train import image_loop

SMALL = {"views": {"size": 16, "multi_crop": {"n_small": 2, "size": 8}},
         "projector": {"layers": 3, "hidden_dim": 16, "out_dim": 8, "hidden_bn": False}, "out_dim": 12}


def test_dino_loss_two_crops_by_hand() -> None:
    # Logits built so that P_t = softmax((t - c) / tau_t) and P_s = softmax(s / tau_s) are:
    #   teacher crop 1: a (1/2, 1/4, 1/4), b (1/3, 1/3, 1/3); crop 2: a (1/4, 1/2, 1/4), b (1/4, 1/4, 1/2)
    #   student crop 1: a (1/4, 1/2, 1/4), b (1/2, 1/4, 1/4); crop 2: a (1/2, 1/4, 1/4), b (1/3, 1/3, 1/3)
    # Pair (teacher 1, student 2): H_a = 1/2 ln 2 + 1/2 ln 4 = 1.5 ln 2, H_b = ln 3.
    # Pair (teacher 2, student 1): H_a = 1.5 ln 2, H_b = 1/4 ln 2 + 1/4 ln 4 + 1/2 ln 4 = 1.75 ln 2.
    # Loss = mean of the two batch means = 1.1875 ln 2 + 0.25 ln 3 = 1.097765.
    center = torch.tensor([0.1, -0.2, 0.3])
    tau_t, tau_s = 0.04, 0.1
    p_t = [torch.tensor([[1 / 2, 1 / 4, 1 / 4], [1 / 3, 1 / 3, 1 / 3]]),
           torch.tensor([[1 / 4, 1 / 2, 1 / 4], [1 / 4, 1 / 4, 1 / 2]])]
    p_s = [torch.tensor([[1 / 4, 1 / 2, 1 / 4], [1 / 2, 1 / 4, 1 / 4]]),
           torch.tensor([[1 / 2, 1 / 4, 1 / 4], [1 / 3, 1 / 3, 1 / 3]])]
    teacher = [center + tau_t * p.log() + 5.0 for p in p_t]  # a per-row constant changes nothing
    student = [tau_s * p.log() - 2.0 for p in p_s]
    expected = 1.1875 * math.log(2) + 0.25 * math.log(3)
    assert math.isclose(dino_loss(student, teacher, center, tau_s, tau_t).item(), expected, rel_tol=1e-5)
    assert math.isclose(expected, 1.097765, abs_tol=1e-6)


def test_dino_loss_multi_crop_matches_slow_loop() -> None:
    g = torch.Generator().manual_seed(0)
    student = [torch.randn(3, 5, generator=g) for _ in range(4)]  # 2 global + 2 local crops
    teacher = [torch.randn(3, 5, generator=g) for _ in range(2)]
    center = torch.randn(5, generator=g)
    ts, tt = 0.1, 0.05

    def softmax(row: list[float]) -> list[float]:
        e = [math.exp(v - max(row)) for v in row]
        return [v / sum(e) for v in e]

    total, terms = 0.0, 0
    for i in range(2):
        for v in range(4):
            if v == i:
                continue
            for b in range(3):
                pt = softmax([(float(teacher[i][b, k]) - float(center[k])) / tt for k in range(5)])
                ps = softmax([float(student[v][b, k]) / ts for k in range(5)])
                total -= sum(pt[k] * math.log(ps[k]) for k in range(5)) / 3
            terms += 1
    assert terms == 6
    assert math.isclose(dino_loss(student, teacher, center, ts, tt).item(), total / terms, rel_tol=1e-5)


def test_update_center_exact_values() -> None:
    # batch mean of the teacher rows = (2, 2, -1); 0.75 * (1, 2, 0) + 0.25 * (2, 2, -1) = (1.25, 2, -0.25)
    center = torch.tensor([1.0, 2.0, 0.0])
    out = torch.tensor([[0.0, 4.0, -1.0], [2.0, 0.0, -1.0], [4.0, 2.0, -1.0], [2.0, 2.0, -1.0]])
    assert update_center(center, out, 0.75).tolist() == [1.25, 2.0, -0.25]
    assert center.tolist() == [1.0, 2.0, 0.0]


@pytest.mark.parametrize(("epoch", "expected"), [(0, 0.04), (10, 0.04 + 0.03 * 10 / 29), (29, 0.07),
                                                 (30, 0.07), (99, 0.07)])
def test_teacher_temperature_schedule(epoch: int, expected: float) -> None:
    assert math.isclose(teacher_temperature(epoch, 0.04, 0.07, 30), expected, rel_tol=1e-12)
    reference = np.concatenate([np.linspace(0.04, 0.07, 30), np.full(70, 0.07)])  # released code
    assert math.isclose(teacher_temperature(epoch, 0.04, 0.07, 30), reference[epoch], rel_tol=1e-12)


def test_clip_gradients_scales_each_parameter_separately() -> None:
    # Gradients (3, 4) of norm 5 and (0.6, 0.8) of norm 1, clipped at 2: the first becomes (1.2, 1.6)
    # (times 5 / (5 + 1e-6)), the second is left alone.
    layer = torch.nn.Linear(2, 1, bias=False)
    extra = torch.nn.Parameter(torch.zeros(2))
    module = torch.nn.ParameterList([layer.weight, extra])
    layer.weight.grad = torch.tensor([[3.0, 4.0]])
    extra.grad = torch.tensor([0.6, 0.8])
    clip_gradients_(module, 2.0)
    assert torch.allclose(layer.weight.grad, torch.tensor([[1.2, 1.6]]), atol=1e-6)
    assert torch.equal(extra.grad, torch.tensor([0.6, 0.8]))


def _trainer(project, **knobs) -> Loop:  # noqa: ANN001
    data = tiny_dataset(project / "data")
    cfg = load_config(write_params(project, method="dino", **{**TINY_RUN, **SMALL, **knobs}))
    return image_loop(cfg, data, project / "ck")


def test_teacher_is_the_ema_of_the_student_and_last_layer_frozen_first_epoch(project) -> None:
    # 4 steps per epoch, 12 steps; freeze_last_layer 1 epoch; a low base momentum makes the EMA visible.
    trainer = _trainer(project, momentum=0.5, freeze_last_layer=1, clip_grad=0.0, norm_last_layer=True)
    method = trainer.task.method
    v0 = method.head.last_layer.parametrizations.weight.original1.detach().clone()
    trainer.fit(until=4)
    assert torch.equal(method.head.last_layer.parametrizations.weight.original1, v0)  # frozen in epoch 0
    teacher_before = [p.detach().clone() for p in [*method.teacher_backbone.parameters(),
                                                   *method.teacher_head.parameters()]]
    trainer.fit(until=5)  # step 4
    assert not torch.equal(method.head.last_layer.parametrizations.weight.original1, v0)
    m = cosine_momentum(0.5, 4, trainer.task.total_steps)
    assert 0.5 < m < 1
    student = [*method.backbone.parameters(), *method.head.parameters()]
    teacher = [*method.teacher_backbone.parameters(), *method.teacher_head.parameters()]
    for t, before, s in zip(teacher, teacher_before, student, strict=True):
        assert torch.allclose(t, m * before + (1 - m) * s.detach(), atol=1e-6)
    assert not torch.equal(teacher[0], student[0])
    # parameters only, as the reference code: the teacher's BatchNorm statistics are its own
    assert any(not torch.equal(t, s) for t, s in zip(method.teacher_backbone.buffers(), method.backbone.buffers(),
                                                      strict=True) if t.is_floating_point())
    # norm_last_layer: the weight-norm g stays 1, so every output unit's weight row has norm 1.
    assert torch.allclose(method.head.last_layer.weight.norm(dim=1), torch.ones(12), atol=1e-5)


def test_trainer_run_updates_centre_and_uses_the_teacher_for_features(project) -> None:
    trainer = _trainer(project, warmup_teacher_temp_epochs=2)
    trainer.fit()
    method = trainer.task.method
    assert all(math.isfinite(r["loss"]) for r in trainer.history.rows) and len(trainer.history.rows) == 3
    state = method.state_dict()
    assert {"center", "steps_done", "teacher_backbone.features.0.0.weight"} <= set(state)
    assert int(state["steps_done"]) == 12 and state["center"].abs().sum() > 0
    assert method.feature_extractor() is method.teacher_backbone
    with torch.no_grad():
        feats = method.feature_extractor().eval()(torch.randn(5, 3, 16, 16))
    assert feats.shape == (5, method.backbone.feature_dim)
    fresh = build_method(trainer.task.cfg, trainer.task.info)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.center, state["center"]) and int(fresh.steps_done) == 12


def test_forward_centre_and_teacher_temperature_follow_the_step(project) -> None:
    cfg = load_config(write_params(project, method="dino", **{**TINY_RUN, **SMALL, "warmup_teacher_temp_epochs": 3,
                                                              "center_momentum": 0.5}))
    torch.manual_seed(0)
    method = build_method(cfg, DataInfo(n_images=32))  # batch 16: 2 steps per epoch
    g = torch.Generator().manual_seed(1)
    views = Views([torch.randn(4, 3, 16, 16, generator=g) for _ in range(2)],
                  [torch.randn(4, 3, 8, 8, generator=g) for _ in range(2)])
    with torch.no_grad():
        teacher = method.teacher_head(method.teacher_backbone(torch.cat(views.large)))
    out = method(views, torch.arange(4))
    assert out.embedding.shape == (4, 8)
    assert torch.allclose(method.center, 0.5 * teacher.mean(0), atol=1e-6)
    # tau_t by step: epoch 0 of a 3-epoch warm-up 0.04, epoch 1 0.04 + 0.03 / 2, from epoch 2 on 0.07
    temps = [method.scheduled_values(step, 12)["teacher_temp"] for step in range(7)]
    assert temps == pytest.approx([0.04, 0.04, 0.055, 0.055, 0.07, 0.07, 0.07], rel=1e-12)
    # with the teacher EMA's cosine momentum of the same step (0.996 at step 0, 1 at the last)
    assert method.scheduled_values(0, 12) == {"ema_momentum": 0.996, "teacher_temp": 0.04}
    assert method.scheduled_values(12, 12)["ema_momentum"] == pytest.approx(1.0, abs=1e-12)
    # the forward uses tau_t of the step it is at (steps_done): a later epoch's tau_t changes the loss
    method.steps_done.fill_(2)
    center = method.center.clone()
    with torch.no_grad():
        feats = [method.backbone(torch.cat(views.large)), method.backbone(torch.cat(views.small))]
        student = method.head(torch.cat(feats))
        teacher = method.teacher_head(method.teacher_backbone(torch.cat(views.large)))
        loss = method(views, torch.arange(4)).losses["loss"]
    expected = dino_loss(list(student.split(4)), list(teacher.split(4)), center, 0.1, 0.055)
    assert math.isclose(loss.item(), expected.item(), rel_tol=1e-5)


def test_vit_student_takes_small_crops(project) -> None:
    cfg = load_config(write_params(project, method="dino", **{
        **TINY_RUN, **SMALL, "backbone": {"name": "vit_tiny", "patch_size": 4, "drop_path": 0.1}}))
    torch.manual_seed(0)
    method = build_method(cfg, DataInfo(n_images=16))
    g = torch.Generator().manual_seed(1)
    views = Views([torch.randn(2, 3, 16, 16, generator=g) for _ in range(2)],
                  [torch.randn(2, 3, 8, 8, generator=g) for _ in range(2)])
    loss = method(views, torch.arange(2)).losses["loss"]
    loss.backward()
    assert torch.isfinite(loss) and method.backbone.pos_embed.grad.abs().sum() > 0
    assert all(b.drop_path.p == 0.0 for b in method.teacher_backbone.blocks)
    assert method.feature_extractor()(views.large[0]).shape == (2, 192)

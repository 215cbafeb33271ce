"""Wiring of every image method: ``forward`` feeds the paper's tensors to its (separately tested) pure loss.

For each method the loss of one training-mode step is recomputed here from the method's own
sub-modules, called directly on a deep copy taken before the step (so the state a forward updates,
MoCo's queue, the memory banks, SwAV's queue and DINO's centre, is read as it was before the step),
with the paper's view pairing, the config's knob values (chosen to differ from the pure functions'
defaults) and the stop-gradients written out. Every module is called on the same batch composition
as in ``forward`` (concatenated views or per view), so BatchNorm sees the same statistics.

Besides the value, the parameter gradients of the forward's loss and of the recomputed one are
compared, which pins where gradients are stopped; target / teacher / key networks are perturbed away
from the online ones so that feeding the wrong network is visible. Negative controls show that a
swapped pairing, a wrong temperature, state read after its update or a missing stop-gradient would
give a different value (or gradient).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import TINY_RUN, write_params
from selfsup.methods import DataInfo, Method, MethodOutput, Views, build_method
from selfsup.methods.barlow import barlow_twins
from selfsup.methods.byol import byol_loss
from selfsup.methods.cmc import cross_view_loss, in_batch_cross_view_loss, lab_views
from selfsup.methods.cpc import cpc_infonce
from selfsup.methods.dim import mi_estimate, prior_discriminator_loss, prior_encoder_loss
from selfsup.methods.dino import dino_loss
from selfsup.methods.instdisc import estimate_z, instance_softmax_loss, nce_loss, proximal_term
from selfsup.methods.invaspread import invariance_spreading_loss
from selfsup.methods.moco import moco_infonce
from selfsup.methods.mocov3 import mocov3_loss
from selfsup.methods.simclr import margin_triplet, nt_logistic, nt_xent
from selfsup.methods.simsiam import simsiam_loss
from selfsup.methods.swav import sinkhorn, swapped_prediction_loss
from selfsup.params import load_config

B = 8  # images per batch
RNG_SEED = 11  # global RNG seed set before a forward that draws random numbers (noise indices, DIM's prior)


def _method(project: Path, name: str, info: DataInfo | None = None, **params: object) -> Method:
    """The method built from the ``paper`` preset with TINY_RUN's tiny network, in training mode."""
    cfg = load_config(write_params(project, method=name, **{**TINY_RUN, "batch_size": B, **params}))
    torch.manual_seed(0)
    return build_method(cfg, info or DataInfo(64)).train()


def _views(n: int = 2, size: int = 16, small: int = 0, small_size: int = 8) -> Views:
    g = torch.Generator().manual_seed(1)
    return Views([torch.randn(B, 3, size, size, generator=g) for _ in range(n)],
                 [torch.randn(B, 3, small_size, small_size, generator=g) for _ in range(small)])


def _index(n_images: int = 64) -> torch.Tensor:
    return torch.randperm(n_images, generator=torch.Generator().manual_seed(2))[:B]


@torch.no_grad()
def _perturb(*modules: nn.Module, scale: float = 0.1) -> None:
    """Move a target / key / teacher network away from its online copy, so using the wrong one shows."""
    g = torch.Generator().manual_seed(3)
    for m in modules:
        for p in m.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


def _step(method: Method, views: Views, index: torch.Tensor, seed: int | None = None
          ) -> tuple[Method, MethodOutput]:
    """(a deep copy of ``method`` taken before the step, the output of the step's forward)."""
    ref = copy.deepcopy(method)
    if seed is not None:
        torch.manual_seed(seed)
    return ref, method(views, index)


def _close(got: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(got, expected.to(got.dtype), rtol=1e-5, atol=1e-6)


def _differs(got: torch.Tensor, wrong: torch.Tensor) -> None:
    """Negative control: the miswired value is clearly not the forward's."""
    got, wrong = float(got.detach()), float(wrong.detach())
    assert abs(got - wrong) > 1e-3 * max(1.0, abs(got)), (got, wrong)


def _grads(loss: torch.Tensor, module: nn.Module) -> dict[str, torch.Tensor]:
    """d loss / d parameter for every trainable parameter of ``module`` (zeros where not reached)."""
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, [p for _, p in named], retain_graph=True, allow_unused=True)
    return {n: torch.zeros_like(p) if g is None else g for (n, p), g in zip(named, grads, strict=True)}


def _same_grads(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[n], b[n], rtol=1e-4, atol=1e-6) for n in a)


def _check(method: Method, out: MethodOutput, ref: Method, expected: torch.Tensor,
           frozen: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """The forward's loss equals ``expected`` in value and in every parameter gradient; after
    ``backward`` the ``frozen`` sub-modules (targets, teachers, key encoders) hold no gradient while
    the online network does. Returns the expected gradients (for negative controls)."""
    loss = out.losses["loss"]
    _close(loss, expected)
    want = _grads(expected, ref)
    loss.backward()
    got = {n: torch.zeros_like(p) if p.grad is None else p.grad
           for n, p in method.named_parameters() if p.requires_grad}
    assert got.keys() == want.keys()
    for name, g in want.items():
        torch.testing.assert_close(got[name], g, rtol=1e-4, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")
    assert any(g.abs().max() > 0 for g in got.values())
    for prefix in frozen:
        params = list(method.get_submodule(prefix).parameters())
        assert params and all(not p.requires_grad and p.grad is None for p in params), prefix
    return want


# -- SimCLR, SimCLR v2, Barlow Twins, InvaSpread: one shared encoder on both views ------------------------------

@pytest.mark.parametrize("objective", ["nt_xent", "nt_logistic", "margin_triplet"])
def test_simclr(project: Path, objective: str) -> None:
    method = _method(project, "simclr", temperature=0.3, objective=objective, margin=0.7)
    views = _views()
    ref, out = _step(method, views, _index())
    # Algorithm 1: both views through f and g as one batch, z = [view 1 of the N images; view 2]
    z = ref.projector(ref.backbone(torch.cat(views.large)))
    objective_fn = {"nt_xent": lambda z, tau=0.3, m=0.7: nt_xent(z, temperature=tau),
                    "nt_logistic": lambda z, tau=0.3, m=0.7: nt_logistic(z, temperature=tau),
                    "margin_triplet": lambda z, tau=0.3, m=0.7: margin_triplet(z, margin=m)}[objective]
    expected = objective_fn(z)
    _check(method, out, ref, expected)
    loss = out.losses["loss"]
    # negative controls: positives paired with another image's view; the function's default tau / m
    _differs(loss, objective_fn(torch.cat([z[:B], z[B:].roll(1, 0)])))
    _differs(loss, objective_fn(z, 0.5, 0.4))


@pytest.mark.parametrize("momentum_encoder", [False, True])
def test_simclrv2(project: Path, momentum_encoder: bool) -> None:
    head = {"layers": 3, "hidden_dim": 16, "out_dim": 8, "hidden_bn": True, "last_bn": True}
    method = _method(project, "simclrv2", projector=head, temperature=0.3, momentum_encoder=momentum_encoder)
    frozen: tuple[str, ...] = ()
    if momentum_encoder:
        _perturb(method.key_backbone, method.key_projector)
        frozen = ("key_backbone", "key_projector")
    views = _views()
    ref, out = _step(method, views, _index())
    x = torch.cat(views.large)
    z = ref.projector(ref.backbone(x))
    if momentum_encoder:  # queries from the online network, every key from the EMA network, no gradient
        with torch.no_grad():
            keys = ref.key_projector(ref.key_backbone(x))
    else:
        keys = z
    _check(method, out, ref, nt_xent(z, keys, temperature=0.3), frozen)
    loss = out.losses["loss"]
    _differs(loss, nt_xent(z, keys))  # the function's default tau 0.5
    _differs(loss, nt_xent(z, keys, temperature=0.1))  # the paper's tau, not the configured one
    if momentum_encoder:
        _differs(loss, nt_xent(z, z, temperature=0.3))  # keys from the online network


def test_barlow(project: Path) -> None:
    method = _method(project, "barlow", **{"lambda": 0.02})
    views = _views()
    ref, out = _step(method, views, _index())
    z = ref.projector(ref.backbone(torch.cat(views.large)))
    expected = barlow_twins(z[:B], z[B:], lambda_=0.02)
    _check(method, out, ref, expected)
    loss = out.losses["loss"]
    _differs(loss, barlow_twins(z[:B], z[B:]))  # the function's default lambda 5.1e-3
    _differs(loss, barlow_twins(z[:B], z[B:].roll(1, 0), lambda_=0.02))  # rows of different images


def test_invaspread(project: Path) -> None:
    method = _method(project, "invaspread", temperature=0.2)
    views = _views()
    ref, out = _step(method, views, _index())
    # every feature of both views is an anchor; the batch's features (constants) are the candidates
    z = F.normalize(ref.projector(ref.backbone(torch.cat(views.large))), dim=1)
    expected = invariance_spreading_loss(z, z, temperature=0.2)
    _check(method, out, ref, expected)
    loss = out.losses["loss"]
    _differs(loss, invariance_spreading_loss(z, temperature=0.1))  # the paper's tau, not the configured one
    _differs(loss, invariance_spreading_loss(torch.cat([z[:B], z[B:].roll(1, 0)]), temperature=0.2))  # pairing


# -- BYOL, SimSiam: predictor against a stop-gradient branch -----------------------------------------------------

def test_byol(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    method = _method(project, "byol")
    _perturb(method.target_backbone, method.target_projector)
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def spy(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        seen.append((p, z))
        return byol_loss(p, z)

    monkeypatch.setattr("selfsup.methods.byol.byol_loss", spy)
    views = _views()
    ref, out = _step(method, views, _index())
    # what reaches the loss: online predictions with gradient, target projections without (Sec. 3.1)
    assert len(seen) == 1 and seen[0][0].requires_grad and not seen[0][1].requires_grad
    x = torch.cat(views.large)
    p = ref.predictor(ref.projector(ref.backbone(x)))  # q_theta(z_theta) of both views
    with torch.no_grad():
        z_target = ref.target_projector(ref.target_backbone(x))  # z'_xi from the EMA target network
    expected = byol_loss(p, z_target)  # pairs p(view 1) with z'(view 2) and p(view 2) with z'(view 1)
    want = _check(method, out, ref, expected, frozen=("target_backbone", "target_projector"))
    loss = out.losses["loss"]
    # negative controls: each prediction against the target of its own view; the online network as target
    _differs(loss, byol_loss(p, torch.cat([z_target[B:], z_target[:B]])))
    z_online = ref.projector(ref.backbone(x))
    _differs(loss, byol_loss(p, z_online))
    # without the stop-gradient (online projections as targets, gradient through them) the gradients change
    swapped = torch.cat([z_online[B:], z_online[:B]])
    no_stop = (F.normalize(p, dim=1) - F.normalize(swapped, dim=1)).pow(2).sum(1).view(2, B).sum(0).mean()
    assert not _same_grads(want, _grads(no_stop, ref))


@pytest.mark.parametrize("stop_gradient", [True, False])
def test_simsiam(project: Path, stop_gradient: bool) -> None:
    method = _method(project, "simsiam", predictor_hidden_dim=16, stop_gradient=stop_gradient)
    views = _views()
    ref, out = _step(method, views, _index())
    z = ref.projector(ref.backbone(torch.cat(views.large)))
    p = ref.predictor(z)
    z1, z2 = (z[:B].detach(), z[B:].detach()) if stop_gradient else (z[:B], z[B:])
    expected = simsiam_loss(p[:B], p[B:], z1, z2, stop_gradient=stop_gradient)  # D(p1, z2)/2 + D(p2, z1)/2
    want = _check(method, out, ref, expected)
    loss = out.losses["loss"]
    _differs(loss, simsiam_loss(p[:B], p[B:], z[B:], z[:B]))  # each p against the z of its own view
    # Eq. 3 vs Eq. 2: the other setting of the stop-gradient gives other gradients of f and h
    other = simsiam_loss(p[:B], p[B:], z[:B], z[B:], stop_gradient=not stop_gradient)
    torch.testing.assert_close(other, expected)
    assert not _same_grads(want, _grads(other, ref))


# -- MoCo v1 / v2 and MoCo v3: momentum key encoders ---------------------------------------------------------------

@pytest.mark.parametrize("name", ["moco", "mocov1"])
def test_moco(project: Path, name: str) -> None:
    method = _method(project, name, temperature=0.3, queue_size=4 * B, shuffle_bn_splits=2)
    _perturb(method.key_backbone, method.key_projector)
    method.queue_ptr.fill_(B)
    views = _views()
    queue = method.queue.clone()
    ref, out = _step(method, views, _index())
    # queries: view 1 through the query encoder, in the two contiguous BN groups of the batch
    q = torch.cat([ref.projector(ref.backbone(c)) for c in views.large[0].tensor_split(2)])
    # keys: view 2 through the key encoder with Shuffling BN (Sec. 3.3), restored to image order, no gradient
    perm = ref.permutation(B)
    assert not torch.equal(perm, torch.arange(B))
    with torch.no_grad():
        shuffled = torch.cat([ref.key_projector(ref.key_backbone(c)) for c in views.large[1][perm].tensor_split(2)])
        k = F.normalize(shuffled[torch.argsort(perm)], dim=1)
    expected = moco_infonce(q, k, queue, temperature=0.3)  # negatives: the queue BEFORE this batch's keys
    _check(method, out, ref, expected, frozen=("key_backbone", "key_projector"))
    # then the batch's keys replace the oldest rows and the pointer moves on
    torch.testing.assert_close(method.queue[B : 2 * B], k)
    assert torch.equal(method.queue[:B], queue[:B]) and torch.equal(method.queue[2 * B :], queue[2 * B :])
    assert int(method.queue_ptr) == 2 * B and int(method.shuffle_step) == 1
    loss = out.losses["loss"]
    _differs(loss, moco_infonce(q, k, method.queue, temperature=0.3))  # queue read after the enqueue
    _differs(loss, moco_infonce(q, k, queue))  # the function's default tau 0.2
    with torch.no_grad():
        online_keys = torch.cat([ref.projector(ref.backbone(c)) for c in views.large[1][perm].tensor_split(2)])
    _differs(loss, moco_infonce(q, online_keys[torch.argsort(perm)], queue, temperature=0.3))  # query encoder


@pytest.mark.parametrize("name", ["simclr", "moco"])
def test_bg_swaps_hard_negative(project: Path, name: str) -> None:
    """BG_Swaps' hard negative (``Views.hard_negative``) joins each image's negatives: SimCLR encodes
    it in the batch of the two views, MoCo as keys (Shuffling BN, no gradient)."""
    extra = {"queue_size": 4 * B, "shuffle_bn_splits": 2} if name == "moco" else {}
    method = _method(project, name, temperature=0.3, **extra)
    views = _views()
    views.hard_negative = torch.randn(B, 3, 16, 16, generator=torch.Generator().manual_seed(7))
    if name == "moco":
        _perturb(method.key_backbone, method.key_projector)
        queue = method.queue.clone()
    ref, out = _step(method, views, _index())
    hard = views.hard_negative
    if name == "simclr":
        z = ref.projector(ref.backbone(torch.cat([*views.large, hard])))  # one batch: 2N views + N hard negatives
        expected = nt_xent(z[: 2 * B], temperature=0.3, hard_negatives=z[2 * B :])
        _check(method, out, ref, expected)
        _differs(out.losses["loss"], nt_xent(z[: 2 * B], temperature=0.3))  # the hard negative left out
        return
    q = torch.cat([ref.projector(ref.backbone(c)) for c in views.large[0].tensor_split(2)])
    perm = ref.permutation(B)
    with torch.no_grad():
        shuffled = [torch.cat([ref.key_projector(ref.key_backbone(c)) for c in x[perm].tensor_split(2)])
                    for x in (views.large[1], hard)]
        k, k_hard = (F.normalize(x[torch.argsort(perm)], dim=1) for x in shuffled)
    _check(method, out, ref, moco_infonce(q, k, queue, temperature=0.3, hard_negatives=k_hard),
           frozen=("key_backbone", "key_projector"))
    _differs(out.losses["loss"], moco_infonce(q, k, queue, temperature=0.3))  # the hard negative left out


def test_mocov3(project: Path) -> None:
    method = _method(project, "mocov3", temperature=0.3, predictor_hidden_dim=16, freeze_patch_embed=False)
    _perturb(method.key_backbone, method.key_projector)
    views = _views()
    ref, out = _step(method, views, _index())
    x1, x2 = views.large
    q1 = ref.predictor(ref.projector(ref.backbone(x1)))  # base encoder, each view its own batch
    q2 = ref.predictor(ref.projector(ref.backbone(x2)))
    with torch.no_grad():
        k1 = ref.key_projector(ref.key_backbone(x1))  # momentum encoder, no gradient
        k2 = ref.key_projector(ref.key_backbone(x2))
    expected = mocov3_loss(q1, q2, k1, k2, temperature=0.3)  # ctr(q1, k2) + ctr(q2, k1)
    _check(method, out, ref, expected, frozen=("key_backbone", "key_projector"))
    loss = out.losses["loss"]
    _differs(loss, mocov3_loss(q1, q2, k2, k1, temperature=0.3))  # each query against its own view's keys
    _differs(loss, mocov3_loss(q1, q2, k1, k2))  # the function's default tau 0.2
    with torch.no_grad():
        o1, o2 = ref.projector(ref.backbone(x1)), ref.projector(ref.backbone(x2))
    _differs(loss, mocov3_loss(q1, q2, o1, o2, temperature=0.3))  # keys from the base encoder


# -- DINO and SwAV: multi-crop with stateful targets ----------------------------------------------------------------

def test_dino(project: Path) -> None:
    method = _method(project, "dino", views={"size": 16, "multi_crop": {"n_small": 2, "size": 8}},
                     projector={"layers": 3, "hidden_dim": 16, "out_dim": 8, "hidden_bn": False}, out_dim=12,
                     student_temp=0.2, teacher_temp=0.06, warmup_teacher_temp=0.03, warmup_teacher_temp_epochs=5,
                     center_momentum=0.8)
    _perturb(method.teacher_backbone, method.teacher_head)
    method.center.copy_(torch.randn(12, generator=torch.Generator().manual_seed(4)))
    method.steps_done.fill_(2 * method.steps_per_epoch)  # epoch 2 of the teacher temperature's warm-up
    views = _views(small=2)
    center = method.center.clone()
    ref, out = _step(method, views, _index())
    # student: the 2 global crops as one batch, the 2 local crops as another, the head on all of them
    student = ref.head(torch.cat([ref.backbone(torch.cat(views.large)), ref.backbone(torch.cat(views.small))]))
    with torch.no_grad():  # teacher: the global crops only, no gradient
        teacher = ref.teacher_head(ref.teacher_backbone(torch.cat(views.large)))
    tau_t = float(np.linspace(0.03, 0.06, 5)[2])  # the released code's per-epoch warm-up schedule
    assert ref.scheduled_values(2 * ref.steps_per_epoch, 100)["teacher_temp"] == pytest.approx(tau_t)
    expected = dino_loss(list(student.split(B)), list(teacher.split(B)), center, student_temp=0.2,
                         teacher_temp=tau_t)
    _check(method, out, ref, expected, frozen=("teacher_backbone", "teacher_head"))
    # the centre (Eq. 4) moves AFTER the loss used it: c <- m c + (1 - m) mean of the teacher outputs
    torch.testing.assert_close(method.center, 0.8 * center + 0.2 * teacher.mean(0))
    loss = out.losses["loss"]
    s, t = list(student.split(B)), list(teacher.split(B))
    _differs(loss, dino_loss(s, t, method.center, 0.2, tau_t))  # centre read after its update
    _differs(loss, dino_loss(s, t, center, 0.2, 0.06))  # the final tau_t instead of the warm-up's
    _differs(loss, dino_loss(s, t, center, teacher_temp=tau_t))  # the function's default tau_s 0.1
    _differs(loss, dino_loss(s, s[:2], center, 0.2, tau_t))  # the student as its own teacher


def test_swav(project: Path) -> None:
    method = _method(project, "swav", views={"size": 16, "multi_crop": {"n_small": 2, "size": 8}},
                     n_prototypes=10, epsilon=0.07, sinkhorn_iterations=4, temperature=0.2, queue_length=2 * B,
                     queue_start_epoch=0)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        method.prototypes.weight.mul_(3.0)
        method.queue.copy_(F.normalize(torch.randn(method.queue.shape, generator=g), dim=2))
    method.queue_filled.fill_(2 * B)  # a full queue joins the Sinkhorn scores
    method.queue_ptr.fill_(B)
    views = _views(small=2)
    queue = method.queue.clone()
    ref, out = _step(method, views, _index())
    with torch.no_grad():  # prototypes are projected onto the sphere before the forward
        ref.prototypes.weight.copy_(F.normalize(ref.prototypes.weight, dim=1))
    c = ref.prototypes.weight
    feats = [ref.backbone(torch.cat(views.large)), ref.backbone(torch.cat(views.small))]  # per resolution
    z = F.normalize(ref.projector(torch.cat(feats)), dim=1)
    scores = list((z @ c.T).split(B))
    # codes of the two large crops: Sinkhorn (epsilon, iterations) on [queue BEFORE this batch; batch], no gradient
    codes = [sinkhorn(torch.cat([queue[i] @ c.T, scores[i]]).detach(), epsilon=0.07, iterations=4)[-B:]
             for i in range(2)]
    expected = swapped_prediction_loss(scores, codes, temperature=0.2)
    _check(method, out, ref, expected)
    # then this batch's large-crop projections enter the queue at the pointer
    torch.testing.assert_close(method.queue[:, B:], z[: 2 * B].detach().view(2, B, -1))
    assert torch.equal(method.queue[:, :B], queue[:, :B]) and int(method.queue_ptr) == 0
    loss = out.losses["loss"]
    _differs(loss, swapped_prediction_loss(scores, codes))  # the function's default tau 0.1
    _differs(loss, swapped_prediction_loss(scores, codes[::-1], temperature=0.2))  # codes of the other crop
    for wrong in ([sinkhorn(s.detach(), 0.07, 4) for s in scores[:2]],  # no queue
                  [sinkhorn(torch.cat([method.queue[i] @ c.T, scores[i]]).detach(), 0.07, 4)[-B:]
                   for i in range(2)],  # queue read after the enqueue
                  [sinkhorn(torch.cat([queue[i] @ c.T, scores[i]]).detach())[-B:] for i in range(2)]):  # defaults
        _differs(loss, swapped_prediction_loss(scores, wrong, temperature=0.2))


# -- Memory banks: InstDisc and CMC ----------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["nce", "nce_z_ready", "softmax"])
def test_instdisc(project: Path, variant: str) -> None:
    info = DataInfo(32)
    loss_name = variant.removesuffix("_z_ready")
    method = _method(project, "instdisc", info, temperature=0.2, nce_k=7, proximal=3.0, bank_momentum=0.3,
                     instdisc_loss=loss_name)
    if variant == "nce_z_ready":  # a Z estimated on an earlier batch (or restored) is kept
        method.nce_z.fill_(50.0)
        method.nce_z_ready.fill_(True)
    views, index = _views(n=1), _index(32)
    bank = method.memory.bank.clone()
    ref, out = _step(method, views, index, seed=RNG_SEED)
    f = F.normalize(ref.projector(ref.backbone(views.large[0])), dim=1)
    previous = bank[index]  # v_i as stored BEFORE this step
    if loss_name == "nce":
        torch.manual_seed(RNG_SEED)
        noise = bank[torch.randint(32, (B * 7,)).view(B, 7)]  # m = nce_k uniform noise rows
        z_norm = torch.tensor(50.0) if variant == "nce_z_ready" else estimate_z(f.detach(), noise, 32, 0.2)
        main = nce_loss(f, previous, noise, z_norm, 32, temperature=0.2)
        assert float(method.nce_z) == pytest.approx(float(z_norm)) and bool(method.nce_z_ready)
    else:
        main = instance_softmax_loss(f, bank, index, temperature=0.2)
    expected = main + 3.0 * proximal_term(f, previous)
    _check(method, out, ref, expected)
    _close(out.losses[loss_name], main)
    assert torch.equal(method.memory.bank, bank)  # the bank is only written after the optimiser step
    method.on_step_end(0, 10)
    torch.testing.assert_close(method.memory.bank[index], F.normalize(0.3 * previous + 0.7 * f.detach(), dim=1))
    loss = out.losses["loss"]
    new = method.memory.bank
    if loss_name == "nce":
        _differs(loss, nce_loss(f, new[index], noise, z_norm, 32, 0.2) + 3.0 * proximal_term(f, new[index]))
        _differs(loss, nce_loss(f, previous, noise, z_norm, 32) + 3.0 * proximal_term(f, previous))  # tau 0.07
    else:
        _differs(loss, instance_softmax_loss(f, new, index, 0.2) + 3.0 * proximal_term(f, new[index]))
        _differs(loss, instance_softmax_loss(f, bank, index) + 3.0 * proximal_term(f, previous))  # tau 0.07


@pytest.mark.parametrize("negatives", ["memory_bank", "in_batch"])
def test_cmc(project: Path, negatives: str) -> None:
    info = DataInfo(32, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))
    method = _method(project, "cmc", info, temperature=0.2, nce_k=7, bank_momentum=0.3, cmc_negatives=negatives)
    views, index = _views(n=1), _index(32)
    ref, out = _step(method, views, index, seed=RNG_SEED)
    # the normalised view back to RGB with the dataset's statistics, then L and ab
    mean, std = torch.tensor(info.mean).view(1, 3, 1, 1), torch.tensor(info.std).view(1, 3, 1, 1)
    lum, ab = lab_views(views.large[0] * std + mean)
    z_l = F.normalize(ref.projector(ref.backbone(lum)), dim=1)
    z_ab = F.normalize(ref.projector_ab(ref.backbone_ab(ab)), dim=1)
    loss = out.losses["loss"]
    if negatives == "in_batch":
        expected = in_batch_cross_view_loss(z_l, z_ab, temperature=0.2) + in_batch_cross_view_loss(z_ab, z_l,
                                                                                                 temperature=0.2)
        _check(method, out, ref, expected)
        _differs(loss, in_batch_cross_view_loss(z_l, z_l, temperature=0.2)
                 + in_batch_cross_view_loss(z_ab, z_ab, temperature=0.2))  # each view against itself
        _differs(loss, in_batch_cross_view_loss(z_l, z_ab) + in_batch_cross_view_loss(z_ab, z_l))  # tau 0.07
        return
    bank_l, bank_ab = ref.memory_l.bank.clone(), ref.memory_ab.bank.clone()
    torch.manual_seed(RNG_SEED)
    noise = torch.randint(32, (B * 7,)).view(B, 7)  # the same nce_k draws for both banks (reference code)
    # the anchor of one view against the positive and the negatives from the OTHER view's bank (as before the step)
    loss_l = cross_view_loss(z_l, bank_ab[index], bank_ab[noise], temperature=0.2)
    loss_ab = cross_view_loss(z_ab, bank_l[index], bank_l[noise], temperature=0.2)
    _check(method, out, ref, loss_l + loss_ab)
    _close(out.losses["loss_l_ab"], loss_l)
    _close(out.losses["loss_ab_l"], loss_ab)
    method.on_step_end(0, 10)
    torch.testing.assert_close(method.memory_l.bank[index],
                               F.normalize(0.3 * bank_l[index] + 0.7 * z_l.detach(), dim=1))
    torch.testing.assert_close(method.memory_ab.bank[index],
                               F.normalize(0.3 * bank_ab[index] + 0.7 * z_ab.detach(), dim=1))
    _differs(loss, cross_view_loss(z_l, bank_l[index], bank_l[noise], 0.2)
             + cross_view_loss(z_ab, bank_ab[index], bank_ab[noise], 0.2))  # each view against its own bank
    new_l, new_ab = method.memory_l.bank, method.memory_ab.bank
    _differs(loss, cross_view_loss(z_l, new_ab[index], new_ab[noise], 0.2)
             + cross_view_loss(z_ab, new_l[index], new_l[noise], 0.2))  # banks read after their update
    _differs(loss, cross_view_loss(z_l, bank_ab[index], bank_ab[noise])
             + cross_view_loss(z_ab, bank_l[index], bank_l[noise]))  # the function's default tau 0.07


# -- CPC and DIM: one view, patch / local features --------------------------------------------------------------------

# Quarter turns that make each prediction direction point down the rows (top-to-bottom first).
TURNS = {0: 0, 1: 2, 2: 1, 3: 3}


@pytest.mark.parametrize("directions", [1, 4])
def test_cpc(project: Path, directions: int) -> None:
    method = _method(project, "cpc", views={"size": 20}, patch_size=8, patch_stride=4, prediction_steps=2,
                     context_layers=1, directions=directions)
    with torch.no_grad():  # W_k start at zero (every score 0, any pairing gives log N); make them random
        g = torch.Generator().manual_seed(6)
        for w in method.predictors.parameters():
            w.copy_(0.3 * torch.randn(w.shape, generator=g))
    views = _views(n=1, size=20)
    ref, out = _step(method, views, _index())
    x, rows = views.large[0], 4  # (20 - 8) / 4 + 1 patches per side
    patches = torch.stack([torch.stack([x[:, :, 4 * r : 4 * r + 8, 4 * s : 4 * s + 8] for s in range(rows)], 1)
                           for r in range(rows)], 1)  # (B, R, S, 3, 8, 8)
    d = ref.backbone.feature_dim
    z = ref.backbone(patches.flatten(0, 2)).view(B, rows, rows, d).permute(0, 3, 1, 2)  # each patch on its own
    per_step, wrong_steps = [], []
    for k in (1, 2):
        terms, wrong = [], []
        for direction in range(directions):
            zd = torch.rot90(z, TURNS[direction], (2, 3))
            c = ref.context[direction](zd)  # c_{i,j} sees rows <= i of this direction's frame
            pred = ref.predictors[direction][k - 1](c[:, :, :-k].permute(0, 2, 3, 1).reshape(-1, d))  # W_k c_{i,j}
            target = zd[:, :, k:].permute(0, 2, 3, 1).reshape(-1, d)  # z_{i+k,j}; the batch's others: negatives
            terms.append(cpc_infonce(pred, target))
            off_by_one = zd[:, :, k - 1 : rows - 1].permute(0, 2, 3, 1).reshape(-1, d)  # z_{i+k-1,j}
            wrong.append(cpc_infonce(pred, off_by_one))
        per_step.append(torch.stack(terms).mean())
        wrong_steps.append(torch.stack(wrong).mean())
    expected = torch.stack(per_step).mean()
    _check(method, out, ref, expected)
    for k in (1, 2):
        _close(out.losses[f"infonce_k{k}"], per_step[k - 1])
    _differs(out.losses["loss"], torch.stack(wrong_steps).mean())  # predicting the row k - 1 ahead


@pytest.mark.parametrize("estimator", ["jsd", "infonce", "dv"])
def test_dim(project: Path, estimator: str) -> None:
    method = _method(project, "dim", estimator=estimator, alpha=0.5, beta=0.7, gamma=0.3, dim_global=8, score_dim=16)
    views = _views(n=1)
    ref, out = _step(method, views, _index(), seed=RNG_SEED)
    fmap = ref.backbone.feature_map(views.large[0])  # local features C(x) (B, C, h, w)
    y = ref.global_head(fmap.mean((2, 3)))  # global feature Y = E(x)
    local = ref.local_critic(fmap).flatten(2)  # (B, U, h*w)
    scores = torch.einsum("iup,ju->ijp", local, ref.local_global_critic(y)) / 4.0  # T / sqrt(score_dim)
    mi_local = mi_estimate(scores, estimator)
    flat_scores = (ref.map_critic(fmap.flatten(1)) @ ref.map_global_critic(y).T)[..., None] / 4.0
    mi_global = mi_estimate(flat_scores, estimator)
    torch.manual_seed(RNG_SEED)
    prior = torch.rand_like(y)  # samples of the uniform prior
    disc = ref.discriminator
    prior_disc = prior_discriminator_loss(disc(prior), disc(y.detach()))  # D trained on detached encodings
    frozen_disc = copy.deepcopy(disc).requires_grad_(False)
    prior_enc = prior_encoder_loss(frozen_disc(y))  # the encoder's move, through a D that takes no gradient
    expected = -0.5 * mi_global - 0.7 * mi_local + 0.3 * (prior_disc + prior_enc)
    want = _check(method, out, ref, expected)
    for name, value in (("mi_local", mi_local), ("mi_global", mi_global), ("prior_disc", prior_disc),
                        ("prior_enc", prior_enc)):
        _close(out.losses[name], value)
    loss = out.losses["loss"]
    _differs(loss, -0.5 * mi_global - 0.7 * mi_estimate(scores * 4.0, estimator) + 0.3 * (prior_disc + prior_enc))
    _differs(loss, -0.7 * mi_global - 0.5 * mi_local + 0.3 * (prior_disc + prior_enc))  # alpha and beta swapped
    # D's gradient comes from its own loss only: the encoder's loss through the live D changes it
    live = -0.5 * mi_global - 0.7 * mi_local + 0.3 * (prior_disc + prior_encoder_loss(disc(y)))
    torch.testing.assert_close(live, expected)
    assert not _same_grads(want, _grads(live, ref))

"""MoCo v3: the symmetrised contrastive loss of Algorithm 1 by hand, the cosine momentum update,
the frozen patch projection, and a smoke run of the training loop with a ViT."""

from __future__ import annotations

import logging
import math

import torch

from conftest import TINY_RUN, tiny_dataset, write_params
from selfsup.methods import DataInfo, build_method
from selfsup.methods.mocov3 import MoCoV3, mocov3_ctr, mocov3_loss
from selfsup.params import load_config
from selfsup.train import image_loop

VIT = {**TINY_RUN, "epochs": 1, "lr": 1e-3, "backbone": {"name": "vit_tiny", "patch_size": 4},
       "predictor_hidden_dim": 16, "optim": {"name": "adamw", "weight_decay": 0.1, "warmup_epochs": 0}}


def slow_ctr(q: torch.Tensor, k: torch.Tensor, offset: int, tau: float) -> float:
    """2 tau * mean_n -log(exp(q_n.k_{offset+n} / tau) / sum_m exp(q_n.k_m / tau)), term by term."""
    total = 0.0
    for n, qn in enumerate(q.double()):
        qn = qn / qn.norm()
        sims = [float(qn @ (km / km.norm())) / tau for km in k.double()]
        total += -math.log(math.exp(sims[offset + n]) / sum(math.exp(s) for s in sims))
    return 2 * tau * total / len(q)


def test_loss_matches_hand_computed_case() -> None:
    # tau = 0.25 (so 2 tau = 0.5). q1 = [(1,0), (0,1)], k2 = [(1,0), (.6,.8)]:
    #   logits [[4, 2.4], [0, 3.2]], labels [0, 1]: log(1 + e^-1.6) = 0.183901, log(1 + e^-3.2) = 0.039953
    #   ctr(q1, k2) = 0.5 * (0.183901 + 0.039953) / 2 = 0.055964
    # q2 = [(0,1), (1,0)], k1 = [(0,1), (-1,0)]:
    #   logits [[4, 0], [0, -4]]: log(1 + e^-4) = 0.018150, 4 + log(1 + e^-4) = 4.018150
    #   ctr(q2, k1) = 0.5 * (0.018150 + 4.018150) / 2 = 1.009075; L = 1.065038
    q1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    k2 = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    q2 = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    k1 = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    assert math.isclose(mocov3_ctr(q1, k2, temperature=0.25).item(), 0.055964, abs_tol=1e-5)
    assert math.isclose(mocov3_ctr(q2, k1, temperature=0.25).item(), 1.009075, abs_tol=1e-5)
    assert math.isclose(mocov3_loss(q1, q2, k1, k2, temperature=0.25).item(), 1.065038, abs_tol=1e-5)


def test_ctr_matches_slow_loop_and_gathered_keys_average_to_the_global_loss() -> None:
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    assert math.isclose(mocov3_ctr(q, k, 0, 0.2).item(), slow_ctr(q, k, 0, 0.2), rel_tol=1e-5)
    # Two "ranks" of 3 queries each against all 6 keys, positives at rank * 3 + n.
    per_rank = [mocov3_ctr(q[r * 3 : (r + 1) * 3], k, r * 3, 0.2) for r in range(2)]
    assert math.isclose(slow_ctr(q[3:], k, 3, 0.2), per_rank[1].item(), rel_tol=1e-5)
    assert torch.allclose(torch.stack(per_rank).mean(), mocov3_ctr(q, k, 0, 0.2), atol=1e-6)


def _method(project, **values) -> MoCoV3:  # noqa: ANN001
    torch.manual_seed(0)
    return build_method(load_config(write_params(project, method="mocov3", **{**VIT, **values})), DataInfo(64))


def test_momentum_update_follows_the_cosine_schedule(project) -> None:
    method = _method(project, backbone={"name": "small_cnn", "width": 4}, freeze_patch_embed=False)
    with torch.no_grad():
        method.projector[0].weight.fill_(1.0)
        method.key_projector[0].weight.fill_(3.0)
    online = {k: v.clone() for k, v in method.backbone.named_parameters()}
    with torch.no_grad():
        for p in method.key_backbone.parameters():
            p.mul_(-2.0)
    target = {k: v.clone() for k, v in method.key_backbone.named_parameters()}
    # After step 49 of 100 the reference code's next update uses m at k = 50:
    # 1 - (1 - 0.99) * (cos(pi/2) + 1) / 2 = 0.995; 0.995 * 3 + 0.005 * 1 = 2.99
    assert math.isclose(method.ema_momentum(49, 100), 0.995, abs_tol=1e-12)
    with torch.no_grad():
        for b in method.backbone.buffers():
            b.add_(5)
    key_buffers = {k: v.clone() for k, v in method.key_backbone.named_buffers()}
    method.on_step_end(49, 100)
    assert torch.allclose(method.key_projector[0].weight, torch.full_like(method.key_projector[0].weight, 2.99))
    for name, p in method.key_backbone.named_parameters():
        assert torch.allclose(p, 0.995 * target[name] + 0.005 * online[name], atol=1e-7), name
    # parameters only, as the reference code: the momentum encoder keeps its own BatchNorm statistics
    assert key_buffers and all(torch.equal(b, key_buffers[k]) for k, b in method.key_backbone.named_buffers())
    assert not any(p.requires_grad for p in method.key_backbone.parameters())


def test_vit_gets_mocov3_init_and_conv_backbones_ignore_the_freeze_with_a_warning(project, caplog) -> None:
    method = _method(project)
    vit = method.backbone
    assert not vit.patch_embed.weight.requires_grad and not vit.patch_embed.bias.requires_grad
    assert not vit.pos_embed.requires_grad and torch.equal(vit.pos_embed[0, 0], torch.zeros(192))
    # Fixed sin-cos embedding of the token at row 1, column 2 (grid 4x4): [sin 2, cos 2, sin 1, cos 1]
    # in the first entry of each quarter (omega_0 = 1).
    token = vit.pos_embed[0, 1 + 4 + 2, [0, 48, 96, 144]]
    assert torch.allclose(token, torch.tensor([math.sin(2), math.cos(2), math.sin(1), math.cos(1)]))
    assert vit.cls_token.abs().max() < 1e-4
    trainable = _method(project, freeze_patch_embed=False, sincos_pos_embed=False).backbone
    assert trainable.patch_embed.weight.requires_grad and trainable.pos_embed.requires_grad
    with caplog.at_level(logging.WARNING):
        conv = _method(project, backbone={"name": "small_cnn", "width": 4}, freeze_patch_embed=True)
    assert "freeze_patch_embed=true is ignored" in caplog.text
    assert all(p.requires_grad for p in conv.backbone.parameters())


def test_trainer_smoke_run_keeps_the_patch_projection_frozen(project) -> None:
    data = tiny_dataset(project / "data")
    cfg = load_config(write_params(project, method="mocov3", **VIT))
    trainer = image_loop(cfg, data, project / "ck")
    m = trainer.task.method
    before = {k: v.clone() for k, v in m.state_dict().items()}
    trainer.fit()
    assert trainer.step == 4 and all(math.isfinite(r["loss"]) for r in trainer.history.rows)
    after = m.state_dict()
    for frozen in ("backbone.patch_embed.weight", "backbone.patch_embed.bias", "backbone.pos_embed"):
        assert torch.equal(before[frozen], after[frozen]), frozen
    for trained in ("backbone.blocks.0.attn.qkv.weight", "projector.0.weight", "predictor.0.weight",
                    "key_backbone.blocks.0.attn.qkv.weight"):
        assert not torch.equal(before[trained], after[trained]), trained
    # The key encoder lags behind: not equal to the query encoder after training.
    assert not torch.equal(after["key_backbone.blocks.0.attn.qkv.weight"], after["backbone.blocks.0.attn.qkv.weight"])
    assert any(k.startswith("key_projector.") for k in after) and not any(k.startswith("key_predictor") for k in after)
    feats = m.feature_extractor().eval()(torch.randn(3, 3, 16, 16))
    assert feats.shape == (3, 192)

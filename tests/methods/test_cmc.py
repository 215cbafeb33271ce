"""Contrastive Multiview Coding (Tian et al. 2020): the Lab split, the cross-view losses of Eq. (2)
against hand-computed cases, the input-adapted encoders, and the method under the real training loop."""

import math

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from conftest import TINY_RUN, tiny_dataset, write_params
from selfsup.config.image import BackboneConfig
from selfsup.methods import DataInfo, Views, build_method
from selfsup.methods.cmc import adapt_input_channels, cross_view_loss, in_batch_cross_view_loss, lab_views
from selfsup.models.backbones import build_backbone
from selfsup.params import load_config
from selfsup.train import image_loop


def test_lab_split_shapes_values_and_ranges() -> None:
    # White: L = 100 -> (100 - 50) / 50 = 1; black: L = 0 -> -1. Greys have a = b = 0, so
    # a -> (0 - 6.025) / 92.208 = -0.065342 and b -> (0 + 6.6895) / 101.1675 = 0.066123.
    # sRGB red is Lab (53.2406, 80.0923, 67.2027): (0.064812, 0.803227, 0.730367).
    rgb = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]).view(3, 3, 1, 1)
    lum, ab = lab_views(rgb)
    assert lum.shape == (3, 1, 1, 1) and ab.shape == (3, 2, 1, 1)
    assert torch.allclose(lum.flatten(), torch.tensor([1.0, -1.0, 0.064812]), atol=1e-4)
    grey = torch.tensor([-0.065342, 0.066123])
    assert torch.allclose(ab[0].flatten(), grey, atol=1e-4) and torch.allclose(ab[1].flatten(), grey, atol=1e-4)
    assert torch.allclose(ab[2].flatten(), torch.tensor([0.803227, 0.730367]), atol=1e-4)

    g = torch.Generator().manual_seed(0)
    lum, ab = lab_views(torch.rand(8, 3, 16, 16, generator=g))
    assert lum.shape == (8, 1, 16, 16) and ab.shape == (8, 2, 16, 16)
    assert lum.min() >= -1 - 1e-4 and lum.max() <= 1 + 1e-4
    assert ab.min() >= -1 - 1e-4 and ab.max() <= 1 + 1e-4
    assert ab.abs().max() > 0.3  # random colours span a good part of the range


def test_cross_view_loss_with_sampled_negatives_matches_hand_computed_case() -> None:
    # tau = 1, anchor (1,0), positive (0.6,0.8), negatives (0,1), (-1,0): logits 0.6, 0, -1.
    # -log(e^0.6 / (e^0.6 + 1 + e^-1)) = -log(1.822119 / 3.190000) = 0.560020
    e = math.exp
    expected = -math.log(e(0.6) / (e(0.6) + 1 + e(-1)))
    assert math.isclose(expected, 0.560020, abs_tol=1e-6)
    loss = cross_view_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.6, 0.8]]),
                           torch.tensor([[[0.0, 1.0], [-1.0, 0.0]]]), temperature=1.0)
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)
    # tau = 0.5 doubles every logit: -log(e^1.2 / (e^1.2 + 1 + e^-2)) = 0.289...
    half = cross_view_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.6, 0.8]]),
                           torch.tensor([[[0.0, 1.0], [-1.0, 0.0]]]), temperature=0.5)
    assert math.isclose(half.item(), -math.log(e(1.2) / (e(1.2) + 1 + e(-2))), rel_tol=1e-6)


def test_in_batch_cross_view_loss_matches_hand_computed_case() -> None:
    # tau = 1. L anchors (1,0), (0,1); ab candidates (0.6,0.8), (0,1).
    # Row 1: logits 0.6, 0 -> -log(e^0.6 / (e^0.6 + 1)) = softplus(-0.6) = 0.437488
    # Row 2: logits 0.8, 1 -> -log(e / (e^0.8 + e)) = softplus(-0.2) = 0.598139; mean 0.517813.
    expected = (math.log1p(math.exp(-0.6)) + math.log1p(math.exp(-0.2))) / 2
    assert math.isclose(expected, 0.517813, abs_tol=1e-6)
    anchors = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    candidates = torch.tensor([[0.6, 0.8], [0.0, 1.0]])
    assert math.isclose(in_batch_cross_view_loss(anchors, candidates, temperature=1.0).item(), expected, rel_tol=1e-6)
    # As rank 1 of 2 (offset 1), the anchor (0,1) has candidates[1] as its positive: softplus(-0.2).
    rank1 = in_batch_cross_view_loss(anchors[1:], candidates, offset=1, temperature=1.0)
    assert math.isclose(rank1.item(), math.log1p(math.exp(-0.2)), rel_tol=1e-6)


@pytest.mark.parametrize("cfg", [BackboneConfig(width=4), BackboneConfig(width=4, norm="gn_ws"),
                                 BackboneConfig(name="resnet18")])
def test_first_conv_takes_one_or_two_channels(cfg) -> None:
    for channels in (1, 2):
        net = adapt_input_channels(build_backbone(cfg, 16), channels)
        first = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
        assert first.in_channels == channels
        assert parametrize.is_parametrized(first, "weight") == (cfg.norm == "gn_ws")
        assert net.eval()(torch.randn(2, channels, 16, 16)).shape == (2, net.feature_dim)
    with pytest.raises(ValueError, match="no Conv2d"):
        adapt_input_channels(nn.Linear(3, 3), 1)


def test_memory_bank_forward_is_the_sum_of_both_directions(project) -> None:
    cfg = load_config(write_params(project, method="cmc", **TINY_RUN, nce_k=6))
    torch.manual_seed(0)
    method = build_method(cfg, DataInfo(n_images=20)).eval()
    x, index = torch.randn(4, 3, 16, 16), torch.tensor([2, 7, 0, 19])
    torch.manual_seed(1)
    out = method(Views([x]), index)
    torch.manual_seed(1)
    noise = method.memory_l.sample_for_batch(4, 6)
    lum, ab = lab_views(method.unnormalize(x))
    z_l = torch.nn.functional.normalize(method.projector(method.backbone(lum)), dim=1)
    z_ab = torch.nn.functional.normalize(method.projector_ab(method.backbone_ab(ab)), dim=1)
    bank_l, bank_ab = method.memory_l.bank, method.memory_ab.bank
    l_vs_ab = cross_view_loss(z_l, bank_ab[index], bank_ab[noise], 0.07)
    ab_vs_l = cross_view_loss(z_ab, bank_l[index], bank_l[noise], 0.07)
    assert torch.allclose(out.losses["loss_l_ab"], l_vs_ab, atol=1e-5)
    assert torch.allclose(out.losses["loss_ab_l"], ab_vs_l, atol=1e-5)
    assert torch.allclose(out.losses["loss"], l_vs_ab + ab_vs_l, atol=1e-5)
    assert out.embedding.shape == (4, 16)


def test_trainer_updates_both_banks_and_extractor_concatenates_views(project) -> None:
    data = tiny_dataset(project / "data")
    cfg = load_config(write_params(project, method="cmc", **TINY_RUN, nce_k=16))
    trainer = image_loop(cfg, data, project / "ck")
    banks = {k: trainer.task.method.state_dict()[k].clone() for k in ("memory_l.bank", "memory_ab.bank")}
    trainer.fit()
    losses = [r["loss"] for r in trainer.history.rows]
    assert len(losses) == cfg.epochs and all(math.isfinite(v) for v in losses)
    state = trainer.task.method.state_dict()
    for key, before in banks.items():
        assert state[key].shape == (64, 8)
        assert torch.allclose(state[key].norm(dim=1), torch.ones(64), atol=1e-5)
        assert (state[key] - before).abs().sum(1).min() > 1e-3  # every image's row was written
    assert not torch.allclose(state["memory_l.bank"], state["memory_ab.bank"])
    assert state["backbone.features.0.0.weight"].shape[1] == 1
    assert state["backbone_ab.features.0.0.weight"].shape[1] == 2

    method = trainer.task.method.eval()
    extractor = method.feature_extractor()
    x = torch.randn(5, 3, 16, 16)
    feats = extractor(x)
    assert feats.shape == (5, 2 * method.backbone.feature_dim)
    lum, ab = lab_views(method.unnormalize(x))
    assert torch.allclose(feats, torch.cat([method.backbone(lum), method.backbone_ab(ab)], 1), atol=1e-5)
    assert not any(name in extractor.state_dict() for name in ("mean", "std"))


def test_in_batch_option_has_no_banks_and_trains(project) -> None:
    data = tiny_dataset(project / "data")
    cfg = load_config(write_params(project, method="cmc", cmc_negatives="in_batch",
                                   **{**TINY_RUN, "epochs": 1}))
    trainer = image_loop(cfg, data, project / "ck")
    assert not any("memory" in k for k in trainer.task.method.state_dict())
    trainer.fit()
    assert math.isfinite(trainer.history.rows[-1]["loss"])

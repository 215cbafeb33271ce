"""Which networks each method builds and where each loss term's gradient goes: DCLGAN's two directions
have their own heads and discriminators, keys and detached fakes carry no gradient, the paper weights."""

from __future__ import annotations

import pytest
import torch

from selfsup.config.translate import TranslateConfig
from selfsup.errors import ConfigError
from selfsup.params import config_from_dict
from selfsup.translate.objectives import Translator, Weights, weights

SMALL = {"width": 4, "n_blocks": 2, "disc_width": 4, "n_patches": 16, "head_dim": 8}


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """Tiny networks: one intra-op thread."""


def _model(method: str, **values: object) -> Translator:
    torch.manual_seed(0)
    return Translator(TranslateConfig(method=method, **{**SMALL, **values}))


def _images(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, 3, 16, 16, generator=g), torch.rand(2, 3, 16, 16, generator=g)


def _grads(module: torch.nn.Module) -> float:
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


def test_paper_weights_per_method() -> None:
    assert weights(TranslateConfig(method="cut")) == Weights(gan=1, nce=1, nce_identity=1, identity=0, cycle=0,
                                                             similarity=0, flip=False)
    assert weights(TranslateConfig(method="fastcut")) == Weights(gan=1, nce=10, nce_identity=0, identity=0, cycle=0,
                                                                 similarity=0, flip=True)
    assert weights(TranslateConfig(method="dclgan")) == Weights(gan=1, nce=2, nce_identity=0, identity=1, cycle=0,
                                                                similarity=0, flip=False)
    assert weights(TranslateConfig(method="dclgan", similarity=True)).similarity == 10
    assert weights(TranslateConfig(method="cyclegan")) == Weights(gan=1, nce=0, nce_identity=0, identity=5, cycle=10,
                                                                  similarity=0, flip=False)
    # a value set by hand wins over the paper's; CUT's ablation without the identity term
    assert weights(TranslateConfig(method="cut", lambda_nce=4.0)).nce_identity == 4.0
    assert weights(TranslateConfig(method="cut", nce_identity=False)).nce_identity == 0


def test_networks_per_method() -> None:
    cut, dcl, cyc = _model("cut"), _model("dclgan"), _model("cyclegan")
    assert not hasattr(cut, "g_ba") and not hasattr(cut, "head_2") and len(cut.discriminators()) == 1
    assert dcl.head_1 is not dcl.head_2 and dcl.d_a is not dcl.d_b and dcl.g_ab is not dcl.g_ba
    assert not hasattr(cyc, "head_1") and len(cyc.discriminators()) == 2
    names = {n.split(".")[0] for n, _ in dcl.named_parameters()}
    assert names == {"g_ab", "g_ba", "d_a", "d_b", "head_1", "head_2"}
    assert {id(p) for p in dcl.generator_parameters()}.isdisjoint({id(p) for p in dcl.discriminator_parameters()})
    assert _model("cut", nce_layers="last").nce_layers == (cut.nce_layers[-1],)


def test_dclgan_directions_train_their_own_heads_and_discriminators() -> None:
    """NCE_1 (A -> B) has G_A's keys through H_1 (detached) and G_B's queries through H_2: only H_2 learns
    from it; NCE_2 mirrors it. Each discriminator learns only from its own domain's term."""
    model = _model("dclgan")
    a, b = _images(0)
    for term, learns, idle in (("nce_ab", model.head_2, model.head_1), ("nce_ba", model.head_1, model.head_2)):
        model.zero_grad(set_to_none=True)
        terms = model.generator_loss(model.fakes(a, b, 0, 0), 0, 0)
        terms[term].backward()
        assert _grads(learns) > 0 and _grads(idle) == 0, term
    for term, learns, idle in (("d_b", model.d_b, model.d_a), ("d_a", model.d_a, model.d_b)):
        model.zero_grad(set_to_none=True)
        model.discriminator_loss(model.fakes(a, b, 0, 0))[term].backward()
        assert _grads(learns) > 0 and _grads(idle) == 0, term
        assert _grads(model.g_ab) == 0 and _grads(model.g_ba) == 0  # the fakes are detached


def test_cut_keys_carry_no_gradient_and_identity_nce_uses_b() -> None:
    model = _model("cut")
    a, b = _images(1)
    f = model.fakes(a, b, 0, 0)
    terms = model.generator_loss(f, 0, 0)
    assert set(terms) == {"g_gan_b", "nce", "nce_identity", "loss"}
    expected = terms["g_gan_b"] + 0.5 * (terms["nce"] + terms["nce_identity"])
    torch.testing.assert_close(terms["loss"], expected)
    # the keys (the source's encoding) carry no gradient: a source that requires grad gets none from PatchNCE
    src = a.clone().requires_grad_(True)
    loss = model._nce(model.g_ab, model.g_ab, model.head_1, model.head_1, src, model.g_ab(a), torch.Generator(), False)
    loss.backward()
    assert src.grad is None


def test_cyclegan_total_is_the_paper_sum() -> None:
    model = _model("cyclegan")
    a, b = _images(2)
    t = model.generator_loss(model.fakes(a, b, 0, 0), 0, 0)
    expected = (t["g_gan_b"] + t["g_gan_a"] + 10 * (t["cycle_a"] + t["cycle_b"])
                + 5 * (t["identity_a"] + t["identity_b"]))
    torch.testing.assert_close(t["loss"], expected)


def test_fastcut_flips_half_of_the_steps_deterministically() -> None:
    model = _model("fastcut")
    a, b = _images(3)
    flips = [bool(model.fakes(a, b, 0, s)["flipped"]) for s in range(40)]
    assert flips == [bool(model.fakes(a, b, 0, s)["flipped"]) for s in range(40)]
    assert 10 <= sum(flips) <= 30
    assert not any(bool(_model("cut").fakes(a, b, 0, s)["flipped"]) for s in range(10))
    flipped_step = flips.index(True)
    f = model.fakes(a, b, 0, flipped_step)
    torch.testing.assert_close(f["a"], a.flip(3))
    model.generator_loss(f, 0, flipped_step)["loss"].backward()  # features compared in the source's frame


def test_translate_gives_images_in_range() -> None:
    out = _model("cut").translate((torch.rand(5, 3, 16, 16) * 255).to(torch.uint8), batch_size=2)
    assert out.shape == (5, 3, 16, 16) and out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize(("values", "match"), [
    ({"method": "cut", "similarity": True}, "SimDCL"),
    ({"method": "cyclegan", "lambda_nce": 1.0}, "no PatchNCE"),
    ({"method": "dclgan", "flip_equivariance": True}, "FastCUT"),
    ({"method": "pix2pix"}, "translate.method"),
    ({"negatives": "memory_bank"}, "translate.negatives"),
    ({"steps": 0}, "translate.steps"),
    ({"temperature": 0.0}, "translate.temperature"),
])
def test_bad_knobs_are_config_errors(values: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        config_from_dict({"translate": values})

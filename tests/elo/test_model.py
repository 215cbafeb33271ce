"""EloModel (Piergiovanni et al. 2020, Eq. 1): what is built, what is computed, where gradients go."""

from __future__ import annotations

import pytest
import torch

from selfsup.config import Config
from selfsup.config.video import ELO_TASKS, EloWeightsConfig
from selfsup.elo.losses import binary_task_loss
from selfsup.elo.model import EloModel
from selfsup.elo.tasks import apply_order, apply_reverse, order_task, reverse_task
from selfsup.errors import ConfigError, DataError
from selfsup.schema import build, to_dict

TINY = {"width": 4, "embed_dim": 8, "input_size": 8, "predict_frames": 2}
ZERO = {t: 0.0 for t in ELO_TASKS}


def _cfg(weights: dict | None = None, **elo: object) -> Config:
    spec: dict = {**TINY, **elo}
    if weights is not None:
        spec["weights"] = {m: {**ZERO, **weights.get(m, {})} for m in ("rgb", "flow", "audio", "gray")}
    return build(Config, {"elo": spec})


def _batch(b: int = 4, t: int = 6, s: int = 8, mels: int = 8) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"rgb": torch.rand(b, 3, t, s, s, generator=g) * 2 - 1, "flow": torch.randn(b, 2, t - 1, s, s, generator=g),
            "audio": torch.randn(b, 1, 4 * t, mels, generator=g)}


def _model(cfg: Config) -> EloModel:
    torch.manual_seed(0)
    return EloModel(cfg.elo)


def _grads(module: torch.nn.Module) -> list[bool]:
    return [p.grad is not None and bool(p.grad.abs().sum() > 0) for p in module.parameters()]


def test_default_weights_build_rgb_flow_audio_and_a_head_per_weighted_task() -> None:
    cfg = _cfg()
    model = _model(cfg)
    weights = to_dict(EloWeightsConfig())
    assert set(model.encoders) == {"rgb", "flow", "audio"} and model.inputs == ("rgb", "flow", "audio")
    expected = {f"{m}_{t}" for m, ws in weights.items() for t, w in ws.items() if w > 0 and t != "distill"}
    assert set(model.heads) == expected
    assert set(model.distill) == {"flow_1", "flow_2", "audio_1", "audio_2"}   # distill_layers (0, 0.5, 1)

    out = model(_batch(), torch.Generator().manual_seed(0))
    tasks = {f"{m}/{t}" for m, ws in weights.items() for t, w in ws.items() if w > 0}
    assert set(out) == tasks | {"loss"}
    total = sum(weights[k.split("/")[0]][k.split("/")[1]] * out[k] for k in tasks)
    assert torch.allclose(out["loss"], total)
    assert all(torch.isfinite(v) for v in out.values())


def test_a_zero_weight_task_is_neither_built_nor_computed() -> None:
    on = _model(_cfg({"rgb": {"reconstruct": 1.0, "order": 0.5}}))
    off = _model(_cfg({"rgb": {"reconstruct": 1.0}}))
    assert "rgb_order" in on.heads and "rgb_order" not in off.heads
    assert set(on.encoders) == set(off.encoders) == {"rgb"} and off.inputs == ("rgb",)

    g = torch.Generator().manual_seed(0)
    before = g.get_state()
    out = off({"rgb": _batch()["rgb"]}, g)
    assert set(out) == {"rgb/reconstruct", "loss"}
    assert torch.equal(g.get_state(), before)             # the order task never drew its labels

    out = on({"rgb": _batch()["rgb"]}, g)
    assert not torch.equal(g.get_state(), before)
    out["loss"].backward()
    assert all(_grads(on.heads["rgb_order"]))


def test_order_task_equals_encoding_the_whole_shuffled_batch() -> None:
    # the model re-encodes only the shuffled clips; that must equal the paper's task on the whole batch
    model = _model(_cfg({"rgb": {"order": 1.0}}))
    x = _batch()["rgb"]
    got = model({"rgb": x}, torch.Generator().manual_seed(5))["rgb/order"]
    perms, labels = order_task(len(x), x.shape[2], torch.Generator().manual_seed(5))
    steps = model.encoders["rgb"](apply_order(x, perms)).steps
    assert got.item() == pytest.approx(binary_task_loss(model.heads["rgb_order"](steps), labels).item(), abs=1e-5)


def test_reversed_flow_is_played_backwards_and_negated() -> None:
    model = _model(_cfg({"rgb": {"reconstruct": 1.0}, "flow": {"reverse": 1.0}}))
    batch = _batch()
    got = model(batch, torch.Generator().manual_seed(3))["flow/reverse"]
    labels = reverse_task(4, torch.Generator().manual_seed(3))
    steps = model.encoders["flow"](apply_reverse(batch["flow"], labels, negate=True)).steps
    assert got.item() == pytest.approx(binary_task_loss(model.heads["flow_reverse"](steps), labels).item(), abs=1e-5)


def test_distillation_trains_the_rgb_network_and_not_the_teacher() -> None:
    model = _model(_cfg({"rgb": {"reconstruct": 1.0}, "flow": {"distill": 1.0}, "audio": {"distill": 1.0}},
                        distill_layers=(0.0, 0.0, 1.0)))
    assert set(model.distill) == {"flow_2", "audio_2"}
    out = model(_batch(), torch.Generator().manual_seed(0))
    (out["flow/distill"] + out["audio/distill"]).backward()
    assert not any(_grads(model.encoders["flow"])) and not any(_grads(model.encoders["audio"]))
    assert all(_grads(model.encoders["rgb"].stages)) and all(_grads(model.distill))
    assert not any(_grads(model.heads))


def test_contrastive_and_align_partners_are_fixed_targets() -> None:
    model = _model(_cfg({"rgb": {"contrastive": 1.0, "align": 1.0}, "flow": {"reconstruct": 1.0}}))
    out = model(_batch(), torch.Generator().manual_seed(0))
    (out["rgb/contrastive"] + out["rgb/align"]).backward()
    assert not any(_grads(model.encoders["flow"]))
    assert all(_grads(model.encoders["rgb"])) and all(_grads(model.heads["rgb_contrastive"]))


def test_gray_is_computed_from_rgb_and_cross_predict_reads_the_other_input() -> None:
    model = _model(_cfg({"rgb": {"reconstruct": 1.0}, "gray": {"reconstruct": 1.0, "cross_predict": 1.0}}))
    assert set(model.encoders) == {"rgb", "gray"} and model.inputs == ("rgb", "flow")
    batch = _batch()
    out = model({"rgb": batch["rgb"], "flow": batch["flow"]})
    assert set(out) == {"rgb/reconstruct", "gray/reconstruct", "gray/cross_predict", "loss"}
    assert model.heads["gray_cross_predict"].layers[-1].out_channels == 2           # predicts flow
    with pytest.raises(DataError, match="flow"):
        model({"rgb": batch["rgb"]})


def test_default_model_without_audio_input_is_a_data_error() -> None:
    batch = _batch()
    del batch["audio"]
    with pytest.raises(DataError, match="audio"):
        _model(_cfg())(batch)


@pytest.mark.parametrize("spec, match", [
    ({"weights": {"rgb": {"contrastive": 1.0}, "flow": ZERO, "audio": ZERO}}, "only rgb is built"),
    ({"weights": {"audio": {"cross_predict": 0.5}}}, "audio.cross_predict"),
    ({"weights": {"rgb": {"distill": 0.5}}}, "rgb.distill"),
    ({"distill_layers": [0.5, 1.0]}, "distill_layers"),
    ({"distill_layers": [0.0, 0.0, 0.0]}, "nothing to distill"),
])
def test_impossible_settings_are_config_errors(spec: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build(Config, {"elo": spec})

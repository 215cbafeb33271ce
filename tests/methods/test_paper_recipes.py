"""The paper defaults (params/methods/<method>.yaml) where a line-by-line read against the official code
found them wrong: each value here is the official recipe's, with the source named in the yaml."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from conftest import TINY_RUN, write_params
from selfsup.methods import DataInfo, build_method
from selfsup.params import load_config


def _paper(project: Path, method: str, **extra: object):  # noqa: ANN202
    return load_config(write_params(project, method=method, **extra))


def test_barlow_twins_trains_biases_and_norms_at_its_bias_rate(project: Path) -> None:
    cfg = _paper(project, "barlow")
    assert cfg.optim.bias_norm_lr_ratio == pytest.approx(0.0048 / 0.2)  # main.py --learning-rate-biases / -weights


def test_simclr_uses_the_imagenet_temperature_and_a_projector_ending_in_bn(project: Path) -> None:
    cfg = _paper(project, "simclr")
    assert cfg.knobs.temperature == 0.1 and cfg.projector.last_bn is True


def test_invaspread_uses_the_reference_optimiser(project: Path) -> None:
    cfg = _paper(project, "invaspread")
    assert (cfg.optim.name, cfg.lr, cfg.optim.momentum, cfg.optim.weight_decay) == ("sgd", 0.03, 0.9, 5e-4)


def test_instdisc_does_not_combine_the_proximal_term_with_a_momentum_bank(project: Path, caplog) -> None:
    cfg = _paper(project, "instdisc")
    assert cfg.knobs.proximal == 0.0 and cfg.knobs.bank_momentum == 0.5
    with caplog.at_level(logging.WARNING, logger="selfsup.methods.instdisc"):
        build_method(_paper(project, "instdisc", **TINY_RUN, proximal=30.0), DataInfo(64))
    assert "neither does" in caplog.text


def test_dino_decays_weight_decay_to_0_4_and_leaves_the_vit_s_last_layer_unnormalised(project: Path) -> None:
    cfg = _paper(project, "dino")
    assert (cfg.optim.weight_decay, cfg.optim.weight_decay_end) == (0.04, 0.4)
    assert cfg.knobs.norm_last_layer is False and cfg.backbone.name == "vit_small"


def test_simsiam_keeps_the_predictor_at_a_fixed_rate(project: Path) -> None:
    assert _paper(project, "simsiam").knobs.fix_predictor_lr is True

"""Config resolution: precedence of the layers and clear errors for bad params."""

from __future__ import annotations

import re

import pytest
import yaml

from conftest import REPO, write_params
from selfsup.errors import ConfigError
from selfsup.methods import REGISTRY
from selfsup.params import knob_keys, load_config, parse_overrides
from selfsup.stage_config import stage_params


def test_precedence_method_then_preset_then_params(project) -> None:
    (project / "params" / "presets" / "t.yaml").write_text(yaml.safe_dump(
        {"epochs": 7, "projector": {"out_dim": 32}, "per_method": {"barlow": {"lambda": 0.01}}}))
    path = write_params(project, method="barlow", preset="t", projector={"hidden_dim": 64})
    cfg = load_config(path)
    assert cfg.epochs == 7                      # preset over the method's 1000
    assert cfg.projector.out_dim == 32          # preset over the method's 8192
    assert cfg.projector.hidden_dim == 64       # params.yaml over the method's 8192
    assert cfg.projector.layers == 3            # the method's paper default shows through
    assert cfg.knobs.lambda_ == 0.01            # per_method section of the preset
    cfg = load_config(write_params(project, **{"lambda": 0.005}))
    assert cfg.knobs.lambda_ == 0.005           # params.yaml wins over everything
    assert cfg.to_dict()["lambda"] == 0.005
    assert cfg.flat()["projector.hidden_dim"] == 64


def test_null_means_not_set(project) -> None:
    cfg = load_config(write_params(project, method="simclr", preset="paper", temperature=None))
    assert cfg.knobs.temperature == 0.1         # SimCLR's paper default (the ImageNet recipe)
    assert cfg.batch_size == 4096


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"method": "nosuch"}, ["method='nosuch'", "barlow", "simclr"]),
        ({"method": "barlow", "lambda": -1}, ["lambda=-1", "> 0.0"]),
        ({"temperature": "hot"}, ["temperature='hot'", "float"]),
        ({"epochs": 0}, ["epochs=0", ">= 1"]),
        ({"preset": "nope"}, ["preset='nope'", "digits-cpu"]),
        ({"views": {"crop_scale": [0.2]}}, ["views.crop_scale", "2 values"]),
        ({"views": {"blurr": {}}}, ["views.blurr", "blur"]),
        ({"colour": 1}, ["colour", "allowed keys"]),
        ({"backbone": {"name": "vgg"}}, ["backbone.name='vgg'", "resnet18"]),
        ({"dataset": "mnist"}, ["dataset='mnist'", "cifar10"]),
    ],
)
def test_bad_params_raise_config_error_naming_key_and_allowed(project, values, words) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write_params(project, **values))
    for word in words:
        assert word in str(err.value)


def test_knob_of_another_method_is_dropped_with_a_warning(project, caplog) -> None:
    cfg = load_config(write_params(project, method="simclr", **{"lambda": 0.1}))
    assert "lambda" not in cfg.to_dict()
    assert "lambda=0.1 is ignored" in caplog.text


def test_repository_params_resolve_for_every_method_and_preset(project) -> None:
    for preset in ("digits-cpu", "paper", "cifar10-resnet18", "stl10-resnet18"):
        for method in REGISTRY:
            cfg = load_config(write_params(project, method=method, preset=preset))
            assert cfg.method == method and cfg.preset == preset


def test_every_method_knob_is_a_null_params_key_and_reaches_pretrain(project) -> None:
    """`dvc exp run -S <knob>=...` needs the key in params.yaml, and pretrain must rerun when it changes:
    it does when the knob is in pretrain's resolved params, the file pretrain depends on."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for method in REGISTRY:
        assert (REPO / "params" / "methods" / f"{method}.yaml").is_file(), method
        resolved = stage_params(load_config(write_params(project, method=method)), "pretrain")
        for key in knob_keys(method):
            assert key in params and params[key] is None, f"params.yaml lacks `{key}: null` ({method})"
            assert key in resolved, f"pretrain's resolved params lack {key} ({method})"


def test_an_ignored_knob_is_still_checked(project, caplog) -> None:
    with pytest.raises(ConfigError, match=r"lambda=-1.0 is not allowed: expected float > 0.0.*read by barlow"):
        load_config(write_params(project, method="simclr", **{"lambda": -1}))
    with pytest.raises(ConfigError, match=r"queue_size='big'.*read by moco, mocov1"):
        load_config(write_params(project, method="simclr", queue_size="big", **{"lambda": None}))
    load_config(write_params(project, method="simclr", queue_size=None, **{"lambda": 0.01}))
    assert "lambda=0.01 is ignored" in caplog.text


def test_method_section_is_refused_with_the_top_level_spelling(project) -> None:
    with pytest.raises(ConfigError, match="top-level keys; write e.g. `-S temperature=..."):
        load_config(write_params(project, method="simclr", simclr={"temperature": 0.1}))


def test_a_partial_section_keeps_the_other_values_of_its_configured_default(project) -> None:
    write_params(project, elo={"weights": {"rgb": {"align": 0.0}, "audio": {"distill": 0.25}}})
    weights = load_config(project / "params.yaml").elo.weights
    assert (weights.rgb.align, weights.rgb.reconstruct, weights.rgb.order) == (0.0, 0.5, 0.5)
    assert (weights.audio.distill, weights.audio.contrastive) == (0.25, 0.5)


def test_exponent_floats_without_a_dot_are_numbers_in_params_and_overrides(project) -> None:
    """PyYAML (YAML 1.1) reads ``5e-3`` as a string; params.yaml and ``-S`` must read a number."""
    path = write_params(project, method="barlow")
    path.write_text(re.sub(r"(?m)^lambda: null$", "lambda: 5e-3", path.read_text(), count=1))
    assert "lambda: 5e-3" in path.read_text()
    cfg = load_config(path, overrides=parse_overrides(["optim.weight_decay=1e-6", "lr=2E+0"]))
    assert cfg.knobs.lambda_ == 0.005
    assert cfg.optim.weight_decay == 1e-6
    assert cfg.lr == 2.0
    assert parse_overrides(["dataset=e5", "epochs=5"]) == {"dataset": "e5", "epochs": 5}

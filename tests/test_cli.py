"""The `selfsup` command line: the resolved config and the method catalogue."""

from __future__ import annotations

import pytest
import yaml

from selfsup.__main__ import main


def test_config_prints_the_resolved_config_with_overrides(project, capsys, monkeypatch) -> None:
    monkeypatch.chdir(project)
    assert main(["config", "-S", "method=barlow", "-S", "lambda=0.002"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["method"] == "barlow" and cfg["lambda"] == 0.002


def test_config_reports_a_bad_knob_on_one_line(project, capsys, monkeypatch) -> None:
    monkeypatch.chdir(project)
    assert main(["config", "-S", "method=byol", "-S", "norm=layer"]) == 1
    assert "norm='layer' is not allowed" in capsys.readouterr().err


def test_methods_lists_every_method_with_its_paper_and_knobs(capsys) -> None:
    from selfsup.methods import REGISTRY

    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    for name in REGISTRY:
        assert f"\n{name}: " in f"\n{out}"
    assert main(["methods", "swav"]) == 0
    one = capsys.readouterr().out
    assert one.startswith("swav: SwAV") and "arxiv.org/abs/2006.09882" in one and "epsilon = 0.05" in one
    with pytest.raises(SystemExit, match="unknown method 'nosuch'"):
        main(["methods", "nosuch"])


def test_stage_set_overrides_params_yaml_and_nests_dotted_keys(project, monkeypatch) -> None:
    from selfsup.cli import run_stage, stage_parser

    seen = {}
    monkeypatch.chdir(project)
    argv = ["-S", "method=moco", "-S", "views.background.rm=0.25", "-S", "epochs=3"]
    assert run_stage(lambda args, cfg: seen.update(cfg=cfg), stage_parser("test"), None, argv) == 0
    cfg = seen["cfg"]
    assert cfg.method == "moco" and cfg.epochs == 3 and cfg.views.background.rm == 0.25


def test_stage_set_without_equals_is_a_one_line_error(project, monkeypatch, capsys) -> None:
    from selfsup.cli import run_stage, stage_parser

    monkeypatch.chdir(project)
    assert run_stage(lambda args, cfg: None, stage_parser("test"), None, ["-S", "method"]) == 1
    assert "-S expects KEY=VALUE" in capsys.readouterr().err


def test_stage_overlay_file_applies_over_params_yaml_and_under_set(project, monkeypatch, tmp_path) -> None:
    from selfsup.cli import run_stage, stage_parser

    overlay = tmp_path / "best.yaml"
    overlay.write_text("elo:\n  weights:\n    flow:\n      distill: 0.25\n      order: 0.75\n")
    seen = {}
    monkeypatch.chdir(project)
    argv = ["--overlay", str(overlay), "-S", "elo.weights.flow.order=0.5"]
    assert run_stage(lambda args, cfg: seen.update(cfg=cfg), stage_parser("test"), None, argv) == 0
    flow = seen["cfg"].elo.weights.flow
    assert (flow.distill, flow.order) == (0.25, 0.5)
    missing = ["--overlay", str(tmp_path / "none.yaml")]
    assert run_stage(lambda args, cfg: None, stage_parser("test"), None, missing) == 1

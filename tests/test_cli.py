"""The `selfsup` command line: the resolved config and the method catalogue."""

from __future__ import annotations

import pytest
import yaml

from selfsup.__main__ import main


def test_config_prints_the_resolved_config_with_the_source_of_each_value(project, capsys, monkeypatch) -> None:
    monkeypatch.chdir(project)
    assert main(["config", "-S", "method=barlow", "-S", "lambda=0.002"]) == 0
    out = capsys.readouterr().out
    cfg = yaml.safe_load(out)  # still YAML: the sources are comments
    assert cfg["method"] == "barlow" and cfg["lambda"] == 0.002 and cfg["views"]["size"] == 16
    lines = {line.split(":")[0]: line for line in out.splitlines() if ": " in line and not line.startswith(" ")}
    assert lines["lambda"].endswith("# -S") and lines["method"].endswith("# -S")
    assert lines["preset"].endswith("# params.yaml")
    assert lines["lr"].endswith("# params/presets/digits-cpu.yaml per_method.barlow")
    assert lines["epochs"].endswith("# params/presets/digits-cpu.yaml")
    assert lines["seed"].endswith("# params.yaml")
    assert next(line for line in out.splitlines() if "grabcut_iterations:" in line).endswith("# default")
    assert out.index("lambda:") < out.index("data:")  # the method's knobs come right after the top-level keys


def test_config_changed_shows_only_what_differs_from_the_defaults(project, capsys, monkeypatch) -> None:
    monkeypatch.chdir(project)
    assert main(["config", "--changed", "-S", "method=barlow"]) == 0
    out = capsys.readouterr().out
    cfg = yaml.safe_load(out)
    assert cfg["method"] == "barlow" and cfg["views"]["size"] == 16
    assert "seed" not in cfg and "video" not in cfg and "solarize" not in cfg["views"]
    assert "# default" not in out


def test_methods_say_what_the_preset_makes_of_each_paper_default(project, capsys, monkeypatch) -> None:
    monkeypatch.chdir(project)
    assert main(["methods", "moco"]) == 0
    out = capsys.readouterr().out
    assert "queue_size = 65536  [here 4096, from params/presets/digits-cpu.yaml per_method.moco]" in out
    assert "\n  temperature = 0.2  InfoNCE" in out  # not changed by the preset: no note


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


def test_runs_table_shows_each_experiment_with_what_it_changed_and_scored() -> None:
    from selfsup.experiments import table

    def entry(params: dict, linear: float, video: float | None = None) -> dict:
        headline = {"image": {"linear_top1": linear, "knn_top1": linear - 0.03}}
        if video is not None:
            headline["video"] = {"linear_top1": video, "knn_top1": video - 0.08}
        return {"params": {"params.yaml": {"data": params}}, "metrics": {"results/metrics.json": {"data": headline}}}

    base = {"method": "simclr", "lambda": None, "views": {"size": 16}}
    shown = [{"rev": "workspace", "name": None, "data": entry(base, 0.432, 0.75)},
             {"rev": "7776d04f", "name": "main", "data": entry(base, 0.432, 0.75),
              "experiments": [{"revs": [{"rev": "52d31fb7", "name": "barlow-5e-3",
                                         "data": entry({**base, "method": "barlow", "lambda": 0.005}, 0.224)}]}]}]
    lines = table(shown).splitlines()
    assert lines[0].split()[:3] == ["experiment", "image", "linear"]
    assert lines[1].split() == ["workspace", "43.2", "40.2", "75.0", "67.0", "-"]
    assert lines[3].split() == ["barlow-5e-3", "22.4", "19.4", "-", "-", "method=barlow,", "lambda=0.005"]
    assert max(len(line) for line in lines) <= 120


def test_dag_table_lists_each_stage_after_its_upstream_with_foreach_stages_grouped() -> None:
    from selfsup.dag_view import table

    dot = "\n".join(['strict digraph {', '"figures";', '"check_params";', '"pipelines/paper/dvc.yaml:train@b";',
                     '"pipelines/paper/dvc.yaml:train@a";',
                     '"check_params" -> "pipelines/paper/dvc.yaml:train@a";',
                     '"check_params" -> "pipelines/paper/dvc.yaml:train@b";',
                     '"pipelines/paper/dvc.yaml:train@a" -> "figures";',
                     '"pipelines/paper/dvc.yaml:train@b" -> "figures";', "}"])
    lines = table(dot, width=60).splitlines()
    assert [line.split()[0] for line in lines] == ["check_params", "paper:train@a", "paper:train@b", "figures"]
    assert lines[0].endswith("(reads only params and data files)")
    assert lines[1].split()[1:] == ["<-", "check_params"]
    assert lines[3].split(maxsplit=1)[1] == "<- paper:train@{a, b}"
    wide = table(dot.replace('"figures";', '"' + "x" * 70 + '";').replace('"figures"', '"' + "x" * 70 + '"'), 60)
    assert all(len(line) <= 70 + 2 + 40 for line in wide.splitlines())

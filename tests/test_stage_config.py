"""Each stage sees only the params it declares, and check_params writes exactly those, resolved."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml

from conftest import write_params
from selfsup.cli import run_stage, stage_parser
from selfsup.errors import ConfigError
from selfsup.io import atomic_write_text, check_writable
from selfsup.params import load_config
from selfsup.stage_config import STAGE_SECTIONS, load_stage_params, restrict, stage_params, write_stage_params

REPO = Path(__file__).resolve().parents[1]


def test_a_stage_reading_an_undeclared_section_fails_naming_it(project) -> None:
    cfg = restrict(load_config(project / "params.yaml"), "evaluate")
    assert cfg.seed == 0 and cfg.train.device == "auto" and cfg.eval.knn.k == 20
    with pytest.raises(ConfigError, match=r"stage 'evaluate' read `train.amp`.*STAGE_SECTIONS\['evaluate'\]"):
        _ = bool(cfg.train.amp)
    with pytest.raises(ConfigError, match="stage 'evaluate' read `views`"):
        _ = cfg.views.size
    with pytest.raises(ConfigError, match="stage 'evaluate' read `epochs`"):
        _ = cfg.epochs * 2
    with pytest.raises(ConfigError, match="stage 'evaluate' read `method`"):
        _ = f"{cfg.method}"
    assert "not read by stage evaluate" in repr(cfg.views)
    assert set(cfg.to_dict()) == {"seed", "train", "eval"} and cfg.to_dict()["train"] == {"device": "auto"}


def test_stage_params_hold_the_chosen_methods_knobs_and_nothing_of_the_video_branch(project) -> None:
    cfg = load_config(write_params(project, method="barlow", **{"lambda": 0.01}))
    pretrain = stage_params(cfg, "pretrain")
    assert pretrain["lambda"] == 0.01 and pretrain["method"] == "barlow"
    assert not {"video", "elo", "search", "eval", "temperature"} & set(pretrain)
    assert set(stage_params(cfg, "prepare_images")) == {"seed", "dataset", "data"}
    assert stage_params(cfg, "figures") == {}


def _check_params(project: Path, *sets: str) -> dict[str, str]:
    argv = ["--params", str(project / "params.yaml"), "--out-dir", str(project / "resolved")]
    for s in sets:
        argv += ["-S", s]
    main = __import__("runpy").run_path(str(REPO / "stages/check_params.py"))["main"]
    assert run_stage(main, _parser(), None, argv) == 0
    return {p.stem: p.read_text() for p in sorted((project / "resolved").glob("*.yaml"))}


def _parser():
    parser = stage_parser("check_params")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--stages", nargs="+")
    return parser


def test_a_knob_the_method_ignores_changes_no_stage_file_and_a_read_one_changes_only_its_readers(project) -> None:
    base = _check_params(project)
    assert set(base) == {s for s, sections in STAGE_SECTIONS.items() if sections}
    mtimes = {p: p.stat().st_mtime_ns for p in (project / "resolved").glob("*.yaml")}
    assert _check_params(project, "lambda=5e-3") == base  # simclr does not read lambda
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes  # untouched, not rewritten
    crop = _check_params(project, "views.crop_ratio=[0.5, 2.0]")  # the supervised baseline's views too
    assert {s for s in base if crop[s] != base[s]} == {"baseline", "pretrain"}
    size = _check_params(project, "views.size=24")
    assert {s for s in base if size[s] != base[s]} == {"baseline", "pretrain"}
    epochs = _check_params(project, "epochs=3")  # the supervised baseline trains for the pretraining's steps
    assert {s for s in base if epochs[s] != base[s]} == {"baseline", "pretrain"}
    background = _check_params(project, "views.background.random=0.2")  # the supervised views have none
    assert {s for s in base if background[s] != base[s]} == {"backgrounds", "pretrain"}
    supervised = _check_params(project, "eval.supervised.epochs=5")
    assert {s for s in base if supervised[s] != base[s]} == {"baseline"}
    probe = _check_params(project, "eval.knn.k=10")
    assert {s for s in base if probe[s] != base[s]} == {"baseline", "evaluate", "search", "elo_evaluate"}
    video = _check_params(project, "video.extract.n_mels=32")
    assert {s for s in base if video[s] != base[s]} == {"extract"}


def test_a_bad_ignored_knob_stops_check_params(project, capsys) -> None:
    argv = ["--params", str(project / "params.yaml"), "--out-dir", str(project / "resolved"), "-S", "lambda=-1"]
    main = __import__("runpy").run_path(str(REPO / "stages/check_params.py"))["main"]
    assert run_stage(main, _parser(), None, argv) == 1
    assert "lambda=-1.0 is not allowed" in capsys.readouterr().err
    assert not (project / "resolved").exists()


@pytest.mark.parametrize(("sets", "message"), [
    (["views.multi_crop.n_small=2"], "views.multi_crop.n_small=2 but method 'simclr' does not take multi-crop views "
                                     "(those that do: dino, swav)"),
    (["method=byol", "views.background.swaps=0.5"], "views.background.swaps=0.5 but method 'byol' takes no hard "
                                                     "negatives; BG_Swaps works with moco, mocov1, simclr"),
])
def test_views_the_method_cannot_take_stop_check_params(project, capsys, sets: list[str], message: str) -> None:
    """Multi-crop without a multi-crop method, BG_Swaps without hard negatives: refused before any data stage."""
    argv = ["--params", str(project / "params.yaml"), "--out-dir", str(project / "resolved")]
    for item in sets:
        argv += ["-S", item]
    main = __import__("runpy").run_path(str(REPO / "stages/check_params.py"))["main"]
    assert run_stage(main, _parser(), None, argv) == 1
    assert message in capsys.readouterr().err
    assert not (project / "resolved").exists()


def test_a_resolved_file_loads_with_overrides_but_not_a_new_method(project) -> None:
    cfg = load_config(write_params(project, method="barlow"))
    path = project / "pretrain.yaml"
    write_stage_params(cfg, "pretrain", path)
    loaded = load_stage_params(path, "pretrain", {"epochs": 3})
    assert loaded.method == "barlow" and loaded.epochs == 3 and loaded.knobs == cfg.knobs
    assert loaded.views == cfg.views and loaded.optim == cfg.optim
    with pytest.raises(ConfigError, match="method='simclr' cannot be set on top of the resolved params"):
        load_stage_params(path, "pretrain", {"method": "simclr"})
    with pytest.raises(ConfigError, match="run `dvc repro check_params`"):
        load_stage_params(project / "missing.yaml", "pretrain")


def test_an_unwritable_output_fails_before_the_stage_runs(project, capsys) -> None:
    blocker = project / "a_file"
    blocker.write_text("x")
    parser = stage_parser("segment")
    parser.add_argument("--out", type=Path, required=True)
    ran = []
    argv = ["--params", str(project / "params.yaml"), "--out", str(blocker / "masks")]
    assert run_stage(lambda args, cfg: ran.append(1), parser, "segment", argv) == 1
    assert not ran
    err = capsys.readouterr().err
    assert "OutputError" in err and "a_file is not a folder" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "results"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(Exception, match="cannot write in"):
            check_writable(folder / "metrics.json", "--metrics")
    finally:
        folder.chmod(0o755)


def test_written_files_get_the_umask_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "metrics.json", "{}\n")
        write_stage_params(load_config(REPO / "params.yaml"), "segment", tmp_path / "segment.yaml")
    finally:
        os.umask(old)
    for name in ("metrics.json", "segment.yaml"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644
    assert yaml.safe_load((tmp_path / "segment.yaml").read_text())["segment"]["source"] == "boundary"

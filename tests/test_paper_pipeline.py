"""The paper pipeline resolves (vars, foreach, the scale file) into every run of every figure,
with the overrides each run is meant to have; read through DVC's own parser, nothing runs."""

from __future__ import annotations

import shlex

import pytest
import yaml
from dvc.repo import Repo

from conftest import REPO

METHODS = ("barlow", "byol", "cmc", "cpc", "dim", "dino", "instdisc", "invaspread", "moco", "mocov1", "mocov3",
           "simclr", "simclrv2", "simsiam", "swav")


@pytest.fixture(scope="module")
def stages() -> dict[str, object]:
    with Repo(str(REPO)) as repo:
        return {s.addressing.removeprefix("pipelines/paper/dvc.yaml:"): s for s in repo.index.stages
                if s.addressing.startswith("pipelines/paper/")}


def overrides(cmd: str) -> dict[str, str]:
    words = shlex.split(cmd)
    return dict(words[i + 1].split("=", 1) for i, w in enumerate(words) if w in ("-S", "--tag"))


def test_every_method_has_a_run_and_an_evaluation(stages: dict) -> None:
    for method in METHODS:
        assert overrides(stages[f"configure@{method}"].cmd)["method"] == method
        assert f"--config results/paper/config/{method}/pretrain.yaml" in stages[f"pretrain@{method}"].cmd
        assert f"results/paper/models/{method}/model.pt" in stages[f"evaluate@{method}"].cmd
        assert f"--config results/paper/config/{method}/evaluate.yaml" in stages[f"evaluate@{method}"].cmd


def test_each_study_changes_one_thing_at_the_scale_files_budget(stages: dict) -> None:
    epochs = str(yaml.safe_load((REPO / "pipelines/paper/scale.yaml").read_text())["scale"]["epochs"])
    lambdas = {k: overrides(s.cmd).get("lambda") for k, s in stages.items() if k.startswith("configure@barlow")}
    assert lambdas == {"configure@barlow": None, "configure@barlow-lambda0.0005": "0.0005",
                       "configure@barlow-lambda0.05": "0.05", "configure@barlow-lambda0.5": "0.5"}
    assert overrides(stages["configure@simsiam-no_stop_gradient"].cmd)["stop_gradient"] == "false"
    ablation = overrides(stages["configure@moco-bg_ground_truth"].cmd)
    assert ablation["views.background.random"] == "0.3"
    assert overrides(stages["pretrain@moco-bg_ground_truth"].cmd)["figure"] == "background_ablation"
    assert "--backgrounds results/paper/backgrounds/ground_truth" in stages["pretrain@moco-bg_ground_truth"].cmd
    for name, stage in stages.items():
        if name.startswith("configure@"):
            assert overrides(stage.cmd)["epochs"] == epochs
        if name.startswith("pretrain@"):
            assert overrides(stage.cmd)["run"] == name[9:]


def test_figures_read_only_records_kept_in_git(stages: dict) -> None:
    """The figures stage depends on folders and files that hold only `cache: false` outputs, so it reruns
    on a fresh clone with nothing pulled."""
    assert {"search@cmaes-s2", "search@random-s0", "elo_pretrain@distill", "figures"} <= set(stages)
    deps = {str(d) for d in stages["figures"].deps if str(d).startswith("results/")}
    assert {"results/paper/runs", "results/paper/search/random-s2/trials.csv",
            "results/paper/elo/full/evaluate", "results/paper/fewlabel"} <= deps
    cached = {str(o) for s in stages.values() for o in s.outs if o.use_cache}
    for dep in deps:
        assert not any(out == dep or out.startswith(dep + "/") for out in cached), dep


def test_few_label_grids_read_their_run_fraction_and_teacher(stages: dict) -> None:
    scale = yaml.safe_load((REPO / "pipelines/paper/scale.yaml").read_text())["scale"]["fewlabel"]
    for run in ("simclrv2", "byol"):
        for pct, fraction in (("1pct", "0.01"), ("10pct", "0.1")):
            key = f"{run}-{pct}"
            finetune = stages[f"fewlabel_finetune@{key}"]
            assert overrides(finetune.cmd)["finetune.label_fraction"] == fraction
            assert f"--model results/paper/models/{run}/model.pt" in finetune.cmd
            teacher = f"results/paper/fewlabel_models/{key}/finetune/finetuned.pt"
            for arm in ("distill_self", "distill_small"):
                assert f"--teacher {teacher}" in stages[f"fewlabel_{arm}@{key}"].cmd
            assert overrides(stages[f"fewlabel_distill_small@{key}"].cmd)["distill.student.width"] == str(
                scale["small_width"])
            assert overrides(stages[f"fewlabel_selftrain@{key}"].cmd)["selftrain.teacher"] == "scratch"
    for level in ("s1", "s2", "s3", "s4"):
        assert overrides(stages[f"augment_finetune@{level}"].cmd)["finetune.train.augment"] == level
        ssl = overrides(stages[f"augment_selftrain_ssl@{level}"].cmd)
        rand = overrides(stages[f"augment_selftrain_random@{level}"].cmd)
        assert (ssl["selftrain.teacher"], ssl["selftrain.student_init"]) == ("finetuned", "pretrained")
        assert (rand["selftrain.teacher"], rand["selftrain.student_init"]) == ("scratch", "random")
        assert ssl["selftrain.train.augment"] == rand["selftrain.train.augment"] == level

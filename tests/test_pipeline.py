"""End to end through DVC and MLflow in a throwaway copy of the repository (slow).

Covers: `dvc repro` then up to date; `dvc exp run -S method=barlow -S lambda=5e-3` reruns only
what depends on the knobs and records an MLflow run named after the experiment; a knob the method
ignores reruns nothing past check_params, and a changed schema default reruns exactly the stages
that read it; `dvc push` to a folder remote, then a fresh clone and `dvc pull`, is up to date; queued
experiments run in parallel in DVC's temporary copies and record into the same MLflow store;
bad params fail before any data is touched; new masks rerun pretrain only while a background
augmentation is on; a SIGKILLed pretrain resumes to the same result; the video branch (real MP4s,
extraction, a two-trial search, ELo) runs in the same `dvc repro` and records its MLflow runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from conftest import REPO, kill_after_first_checkpoint

pytestmark = pytest.mark.slow

TINY_PRESET = {
    "dataset": "digits-bg",
    "epochs": 2,
    "batch_size": 64,
    "lr": 0.5,
    "backbone": {"name": "small_cnn", "width": 8},
    "projector": {"layers": 2, "hidden_dim": 64, "out_dim": 32},
    "views": {"size": 16, "hflip": 0.0, "blur": {"p": 0.0}},
    "data": {"digits_bg": {"train_per_scan": 1, "test_per_scan": 1}},
    "optim": {"name": "lars", "warmup_epochs": 0.5},
    "eval": {"linear": {"epochs": 10}},
}


def run(cmd: list[str], cwd: Path, check: bool = True, timeout: int = 900,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}, "PYTHONUNBUFFERED": "1",
           **(env or {})}
    if (cwd / "src" / "selfsup").is_dir():
        env["PYTHONPATH"] = str(cwd / "src")  # the stages run the copy's code, not the installed package
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        output = f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{output}")
    return proc


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git + DVC copy of this repository's files, with a tiny preset as the default."""
    root = tmp_path_factory.mktemp("repo")
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if f.startswith(("pipelines/paper/", "results/")):
            continue  # the paper grid and the committed records belong to the full-size runs
        if (REPO / f).is_file():
            (root / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, root / f)
    (root / "params" / "presets" / "tiny.yaml").write_text(yaml.safe_dump(TINY_PRESET))
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["preset"] = "tiny"
    params["eval"] = {"knn": {"k": 5}}
    params["video"]["synthetic_actions"] = {"clips_per_class": 4, "frames": 8, "size": 32}
    params["video"]["extract"].update(frames=8, size=32)
    params["elo"] = {"epochs": 1, "batch_size": 8, "predict_frames": 2, "width": 4, "embed_dim": 16,
                     "input_size": 16, "weights": {}}
    params["search"].update(n_trials=2, epochs=1)
    params["zipf"] = {"k": 3}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], root)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A"], root)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"], root)
    return root


def mlflow_runs(root: Path) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("selfsup")
    return client.search_runs([exp.experiment_id]) if exp else []


def tree_digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def test_repro_then_up_to_date_then_experiment(repo: Path) -> None:
    run(["dvc", "repro"], repo)
    metrics = json.loads((repo / "results/evaluate/metrics.json").read_text())
    for key in ("linear_top1", "knn_top1", "random_linear_top1", "random_knn_top1", "pixels_linear_top1"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["gain_linear"] == pytest.approx(metrics["linear_top1"] - metrics["random_linear_top1"])
    by_stage: dict[str, list] = {}
    for r in mlflow_runs(repo):
        by_stage.setdefault(r.data.tags.get("stage"), []).append(r)
    assert len(by_stage["pretrain"]) == 1
    image = by_stage["pretrain"][0]
    assert image.data.params["method"] == "simclr"
    assert "image/linear_top1" in image.data.metrics and "train/collapse_std" in image.data.metrics
    finetune = json.loads((repo / "results/finetune/metrics.json").read_text())
    assert finetune["labels"] > 0 and 0.0 <= finetune["finetuned_top1"] <= 1.0
    assert {r.data.tags["arm"] for r in by_stage["finetune"]} == {"finetuned", "scratch"}
    assert all(r.data.tags["pretrain_run_id"] == image.info.run_id for r in by_stage["finetune"])

    video = json.loads((repo / "results/elo_evaluate/metrics.json").read_text())
    assert {"linear_top1", "knn_top1", "zipf_kl", "random_knn_top1"} <= set(video)
    assert json.loads((repo / "results/extract/metrics.json").read_text())["clips_train"] == 24
    assert json.loads((repo / "results/search/metrics.json").read_text())["completed_trials"] == 2
    assert set(yaml.safe_load((repo / "results/search/best.yaml").read_text())["elo"]["weights"]) <= {"rgb", "flow",
                                                                                                         "audio"}
    (search,) = by_stage["search"]
    assert sorted(r.data.tags["mlflow.parentRunId"] for r in by_stage["search-trial"]) == [search.info.run_id] * 2
    (elo,) = by_stage["elo_pretrain"]
    assert "video/knn_top1" in elo.data.metrics and elo.data.tags["distilled"] == "true"

    headline = json.loads((repo / "results/metrics.json").read_text())
    video = json.loads((repo / "results/elo_evaluate/metrics.json").read_text())
    assert headline == {"image": {"linear_top1": metrics["linear_top1"], "knn_top1": metrics["knn_top1"]},
                        "video": {"linear_top1": video["linear_top1"], "knn_top1": video["knn_top1"]}}
    figures = repo / "results/figures"
    table = (figures / "method_comparison.csv").read_text().splitlines()
    assert table[0].startswith("method,linear %,kNN %") and table[1].startswith("simclr,")
    assert f"{100 * metrics['linear_top1']:.1f}" == table[1].split(",")[1]
    for name in ("method_curves.png", "search_progress.svg", "zipf_vs_accuracy.png", "elo_cluster_masses.png",
                 "elo_distillation.md"):
        assert (figures / name).stat().st_size > 0

    again = run(["dvc", "repro"], repo)
    assert "up to date" in again.stdout
    assert "Running stage" not in again.stdout

    exp = run(["dvc", "exp", "run", "-n", "barlow-5e-3", "-S", "method=barlow", "-S", "lambda=5e-3"], repo)
    assert "Running stage 'pretrain'" in exp.stdout and "Running stage 'evaluate'" in exp.stdout
    assert "Running stage 'figures'" in exp.stdout
    assert "Running stage 'prepare_images'" not in exp.stdout
    assert "Running stage 'search'" not in exp.stdout and "Running stage 'extract'" not in exp.stdout
    by_name = {r.info.run_name: r for r in mlflow_runs(repo)}
    barlow = by_name["barlow-5e-3"]
    assert barlow.data.params["method"] == "barlow"
    assert float(barlow.data.params["lambda"]) == 0.005
    assert barlow.data.tags["dvc.exp_name"] == "barlow-5e-3"
    assert "image/knn_top1" in barlow.data.metrics

    shown = json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout)
    names = [e.get("name") for rev in shown for e in (rev.get("experiments") or []) for e in e.get("revs", [])]
    assert "barlow-5e-3" in names

    readme = (REPO / "README.md").read_text()
    pattern = re.search(r"^dvc exp show --drop '([^']+)'", readme, re.M).group(1)  # the README's headline table
    table = run(["dvc", "exp", "show", "--no-pager", "--drop", pattern], repo, env={"COLUMNS": "120"}).stdout
    header = table.splitlines()[1].split()
    assert header == ["Experiment", "image.knn_top1", "image.linear_top1", "video.knn_top1",
                      "video.linear_top1", "method"]
    assert "barlow-5e-3" in table and "…" not in table, table
    assert max(len(line) for line in table.splitlines()) <= 120, table


def stages_run(stdout: str) -> set[str]:
    return {line.split("'")[1] for line in stdout.splitlines() if line.startswith("Running stage '")}


MAIN_STAGES = {"check_params", "prepare_images", "baseline", "segment", "backgrounds", "pretrain", "evaluate",
               "prepare_video", "extract", "search", "elo_pretrain", "elo_evaluate", "figures"}


def test_an_ignored_knob_reruns_nothing_and_a_changed_default_exactly_its_readers(repo: Path) -> None:
    run(["git", "checkout", "--", "params.yaml"], repo)  # an earlier test's experiment leaves its params
    run(["dvc", "repro"], repo)
    try:
        ignored = run(["dvc", "exp", "run", "-S", "lambda=0.01"], repo).stdout  # simclr does not read lambda
        assert stages_run(ignored) == {"check_params"}
    finally:
        run(["git", "checkout", "--", "params.yaml"], repo)
    config = repo / "src/selfsup/config/image.py"
    source = config.read_text()
    assert "crop_ratio: tuple[float, float] = knob((0.75, 4 / 3)" in source
    try:
        config.write_text(source.replace("knob((0.75, 4 / 3)", "knob((0.8, 1.25)"))
        changed = run(["dvc", "repro"], repo).stdout  # the crop reaches pretrain and the supervised baseline
        assert stages_run(changed) == {"check_params", "baseline", "pretrain", "evaluate", "finetune", "figures"}
    finally:
        config.write_text(source)
    assert stages_run(run(["dvc", "repro"], repo).stdout) == {"check_params", "baseline", "pretrain", "evaluate",
                                                              "finetune", "figures"}


def test_push_then_a_fresh_clone_pulls_to_an_up_to_date_pipeline(repo: Path, tmp_path: Path) -> None:
    run(["dvc", "repro"], repo)
    run(["dvc", "remote", "add", "--default", "store", str(tmp_path / "remote")], repo)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    run([*git, "add", "-A"], repo)
    run([*git, "commit", "-qm", "reproduced", "--allow-empty"], repo)
    pushed = run(["dvc", "push"], repo).stdout
    assert "pushed" in pushed
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    assert json.loads((clone / "results/evaluate/metrics.json").read_text()) == json.loads(
        (repo / "results/evaluate/metrics.json").read_text())  # records come with git, before any pull
    assert not (clone / "results/pretrain/model.pt").exists()
    run(["dvc", "pull"], clone)
    assert (clone / "results/pretrain/model.pt").read_bytes() == (repo / "results/pretrain/model.pt").read_bytes()
    status = run(["dvc", "status"], clone).stdout
    assert "up to date" in status, status
    assert stages_run(run(["dvc", "repro"], clone).stdout) == set()
    shown = run(["dvc", "metrics", "show"], clone)
    headline = json.loads((clone / "results/metrics.json").read_text())
    assert shown.stdout.splitlines()[0].split() == ["Path", "image.knn_top1", "image.linear_top1", "video.knn_top1",
                                                    "video.linear_top1"]
    assert float(shown.stdout.splitlines()[1].split()[2]) == pytest.approx(headline["image"]["linear_top1"], abs=1e-5)
    assert "failed" not in shown.stdout + shown.stderr and "WARNING" not in shown.stdout + shown.stderr
    detail = run(["dvc", "metrics", "show", "results/evaluate/metrics.json"], clone).stdout
    assert "random_linear_top1" in detail


def test_bad_params_fail_before_touching_data(repo: Path) -> None:
    if not (repo / "results").exists():
        run(["dvc", "repro"], repo)
    before = tree_digest(repo / "results"), tree_digest(repo / "data")
    lock = (repo / "dvc.lock").read_text()
    for knob in (["-S", "method=nosuch"], ["-S", "method=barlow", "-S", "lambda=-1"]):
        proc = run(["dvc", "exp", "run", *knob], repo, check=False)
        assert proc.returncode != 0
        out = proc.stdout + proc.stderr
        assert "ConfigError" in out
        assert ("method='nosuch'" in out and "simclr" in out) or ("lambda=-1" in out and "> 0.0" in out)
        assert "Running stage 'check_params'" in proc.stdout
        assert "Running stage 'prepare_images'" not in proc.stdout
        assert "Running stage 'pretrain'" not in proc.stdout
        run(["git", "checkout", "--", "params.yaml"], repo)  # a failed exp run leaves its -S values
    assert (tree_digest(repo / "results"), tree_digest(repo / "data")) == before
    assert (repo / "dvc.lock").read_text() == lock


def test_masks_reach_pretrain_only_with_background_augmentation_on(repo: Path) -> None:
    run(["dvc", "repro"], repo)  # the workspace may hold an earlier experiment's outputs
    segment = json.loads((repo / "results/segment/metrics.json").read_text())
    assert segment["source"] == "boundary" and segment["mean_iou"] > 0.6
    try:
        resegmented = run(["dvc", "exp", "run", "-S", "++segment.nearest=4"], repo).stdout
        assert "Running stage 'segment'" in resegmented
        assert "Running stage 'pretrain'" not in resegmented  # augmentation off: new masks change nothing
        on = run(["dvc", "exp", "run", "-S", "++segment.nearest=4", "-S", "views.background.random=0.5"], repo).stdout
        assert "Running stage 'backgrounds'" in on and "Running stage 'pretrain'" in on
        assert "Running stage 'segment'" not in on  # switching augmentation on or off never re-segments
        assert (repo / "data/backgrounds/backgrounds.npy").is_file()
    finally:
        run(["git", "checkout", "--", "params.yaml"], repo)


def run_queue(repo: Path, workers: int = 1, env: dict[str, str] | None = None) -> None:
    """Start the queue's workers (with ``env``) once the last ones have gone, and wait until every queued
    experiment has run; fails naming the log of a failed one."""
    deadline = time.time() + 900
    while "Worker status: 0 active, 0 idle" not in run(["dvc", "queue", "status"], repo).stdout:
        assert time.time() < deadline, "the previous queue workers did not stop"
        time.sleep(2)  # an idle worker stops a minute after the queue is empty; a new one must get ``env``
    run(["dvc", "queue", "start", "-j", str(workers)], repo, env=env)
    while time.time() < deadline:
        status = run(["dvc", "queue", "status"], repo).stdout
        if "Running" not in status and "Queued" not in status:
            break
        time.sleep(5)
    assert "Failed" not in status, run(["dvc", "queue", "logs", status.split()[0]], repo, check=False).stdout


def run_shapes(client: object, runs: list) -> dict[str, list]:
    """What a set of MLflow runs recorded, by stage: metric, param and tag names and top-level artifacts."""
    shapes: dict[str, list] = {}
    for r in runs:
        artifacts = sorted(a.path for a in client.list_artifacts(r.info.run_id))
        tags = sorted(k for k in r.data.tags if not k.startswith("mlflow.") or k == "mlflow.note.content")
        shapes.setdefault(r.data.tags.get("stage", ""), []).append(
            (sorted(r.data.metrics), sorted(r.data.params), tags, artifacts, r.info.status))
    return {stage: sorted(entries) for stage, entries in shapes.items()}


def test_queued_experiments_record_into_the_same_store(repo: Path) -> None:
    before = {r.info.run_id for r in mlflow_runs(repo)}
    run(["dvc", "exp", "run", "--queue", "-S", "method=simclr,barlow", "-S", "seed=7"], repo)
    run_queue(repo, workers=2)
    new = [r for r in mlflow_runs(repo) if r.info.run_id not in before and r.data.tags.get("stage") == "pretrain"]
    assert sorted(r.data.params["method"] for r in new) == ["barlow", "simclr"]
    assert all("image/linear_top1" in r.data.metrics for r in new)
    assert all(r.data.tags.get("dvc.exp_name") for r in new)
    shown = json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout)
    seeds = [e["data"]["params"]["params.yaml"]["data"].get("seed")
             for rev in shown for e in (rev.get("experiments") or []) for e in e.get("revs", [])]
    assert seeds.count(7) == 2


def test_a_queued_experiment_records_into_a_tracking_server_as_into_sqlite(repo: Path, tmp_path: Path) -> None:
    """``MLFLOW_TRACKING_URI`` reaches the queue's workers: a queued experiment's pretrain, evaluation, search
    and its trials record into ``mlflow server`` on PostgreSQL what the same experiment records into sqlite."""
    from mlflow.tracking import MlflowClient

    from servers import MlflowServer, PostgresServer

    sqlite = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")

    def seed_7_shapes() -> dict[str, list]:
        """What the queued ``seed=7`` experiments recorded into sqlite, by stage: the simclr experiment's runs,
        and for a stage it restored from DVC's run cache instead of running (one that does not read ``method``,
        run first by the barlow experiment queued beside it), the runs of the experiment that ran it."""
        by_exp: dict[str, list] = {}
        for r in mlflow_runs(repo):
            if r.data.tags.get("dvc.exp_name"):
                by_exp.setdefault(r.data.tags["dvc.exp_name"], []).append(r)
        seed_7 = [rs for rs in by_exp.values() if any(r.data.params.get("seed") == "7" for r in rs)]
        simclr_first = sorted(seed_7, key=lambda rs: not any(
            r.data.params.get("method") == "simclr" and r.data.tags.get("stage") == "pretrain" for r in rs))
        shapes: dict[str, list] = {}
        for exp_runs in simclr_first:
            for stage, entries in run_shapes(sqlite, exp_runs).items():
                shapes.setdefault(stage, entries)
        return shapes

    reference = seed_7_shapes()
    if "pretrain" not in reference:  # run alone: queue the same experiment into sqlite first
        run(["dvc", "exp", "run", "--queue", "-S", "method=simclr", "-S", "seed=7"], repo)
        run_queue(repo)
        reference = seed_7_shapes()
    before = {r.info.run_id for r in mlflow_runs(repo)}
    pg = PostgresServer()
    pg.start()
    server = MlflowServer(pg.create_database("mlflow"), tmp_path)
    try:
        env = {"MLFLOW_TRACKING_URI": server.uri}
        run(["dvc", "exp", "run", "--queue", "-S", "method=simclr", "-S", "seed=8"], repo, env=env)
        run_queue(repo, env=env)
        client = MlflowClient(server.uri)
        runs = client.search_runs([client.get_experiment_by_name("selfsup").experiment_id])
        assert {r.info.run_id for r in mlflow_runs(repo)} == before  # nothing went into the sqlite store
        assert {r.data.tags.get("stage") for r in runs} >= {"pretrain", "search", "search-trial"}
        assert len({r.data.tags["dvc.exp_name"] for r in runs}) == 1
        assert run_shapes(client, runs) == reference
    finally:
        server.remove()
        pg.remove()


def test_sigkilled_pretrain_resumes_to_the_same_result(repo: Path, tmp_path: Path) -> None:
    if not (repo / "data/images/meta.json").exists():
        run(["dvc", "repro", "prepare_images"], repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params.update({"epochs": 6, "train": {"checkpoint_every": 10, "log_every": 5}})
    (tmp_path / "params").symlink_to(repo / "params")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))

    def pretrain(out: str) -> list[str]:
        return [sys.executable, str(repo / "stages/pretrain.py"), "--params", str(tmp_path / "params.yaml"),
                "--data", str(repo / "data/images"), "--out", str(tmp_path / out),
                "--checkpoints", str(tmp_path / out / "ck"), "--no-mlflow"]

    run(pretrain("full"), tmp_path)
    kill_after_first_checkpoint(pretrain("killed"), tmp_path, tmp_path / "killed/ck/last.pt")
    assert not (tmp_path / "killed/metrics.json").exists()
    resumed = run(pretrain("killed"), tmp_path)
    assert "resumed from" in resumed.stderr
    full = json.loads((tmp_path / "full/metrics.json").read_text())
    again = json.loads((tmp_path / "killed/metrics.json").read_text())
    assert again == full
    assert (tmp_path / "full/history.csv").read_text() == (tmp_path / "killed/history.csv").read_text()



def test_sigkilled_elo_pretrain_resumes_to_the_same_result(repo: Path, tmp_path: Path) -> None:
    """ELo trains through the same loop: killed after its first checkpoint, rerun, it ends with the
    model, history and metrics of an uninterrupted run (training time aside)."""
    if not (repo / "data/video_features/meta.json").exists():
        run(["dvc", "repro", "extract"], repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params.update({"elo": {"epochs": 3, "batch_size": 4}, "train": {"checkpoint_every": 3, "log_every": 2}})
    (tmp_path / "params").symlink_to(repo / "params")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))

    def elo_pretrain(out: str) -> list[str]:
        return [sys.executable, str(repo / "stages/elo_pretrain.py"), "--params", str(tmp_path / "params.yaml"),
                "--data", str(repo / "data/video_features"), "--out", str(tmp_path / out),
                "--checkpoints", str(tmp_path / out / "ck"), "--no-mlflow"]

    run(elo_pretrain("full"), tmp_path)
    kill_after_first_checkpoint(elo_pretrain("killed"), tmp_path, tmp_path / "killed/ck/last.pt")
    assert not (tmp_path / "killed/metrics.json").exists()
    resumed = run(elo_pretrain("killed"), tmp_path)
    assert "resumed from" in resumed.stderr

    def metrics(out: str) -> dict:
        return {k: v for k, v in json.loads((tmp_path / out / "metrics.json").read_text()).items() if k != "seconds"}

    assert metrics("killed") == metrics("full") and metrics("full")["epochs"] == 3
    assert (tmp_path / "full/history.csv").read_text() == (tmp_path / "killed/history.csv").read_text()
    full, killed = (torch.load(tmp_path / out / "rgb.pt", weights_only=True)["state"] for out in ("full", "killed"))
    assert full.keys() == killed.keys() and all(torch.equal(full[k], killed[k]) for k in full)

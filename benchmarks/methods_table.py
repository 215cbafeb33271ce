"""Every registered method on the prepared dataset at one shared budget: accuracy, time, memory.

Each method is pretrained in its own process (so its peak resident memory is its own), with the
repository's ``params.yaml`` and preset, the same number of epochs for all, then evaluated with
the same linear probe and kNN as the ``evaluate`` stage, next to a randomly initialised copy of
its own feature extractor. Results are recorded per method in ``--out`` (rerun one with
``--methods name --force``); the Markdown table is printed and, with ``--update``, the documents'
generated blocks are rewritten from the records (``scripts/docs.py``; BENCHMARKS.md's
``methods-table`` blocks name the record folder each one reads).

    python benchmarks/methods_table.py --epochs 40 --update
    python benchmarks/methods_table.py --epochs 40 --methods simclr --supervised   # the supervised row
    python stages/prepare_images.py -S data.digits_bg.background=black \
        -S data.digits_bg.digit_colour=white --out data/digits-plain
    python benchmarks/methods_table.py --epochs 40 --data data/digits-plain \
        --out benchmarks/records/methods-plain --update
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def run_one(method: str, epochs: int, data: Path, result: Path, params: Path) -> None:
    """Pretrain and evaluate ``method`` in this process; write its row to ``result``."""
    from params_copy import params_with  # benchmarks/, on the path when run as a script
    from selfsup.eval.evaluate import evaluate
    from selfsup.params import load_config
    from selfsup.pretrain import pretrain

    with params_with(params, {"method": method, "epochs": epochs}) as run_params:
        tmp = run_params.parent
        cfg = load_config(run_params)
        start = time.perf_counter()
        train = pretrain(cfg, data, tmp / "out", tmp / "ck", track=False)
        seconds = time.perf_counter() - start
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        metrics = evaluate(cfg, data, tmp / "out" / "model.pt", {"raw_pixels": {"linear_top1": 0.0, "knn_top1": 0.0}})
    row = {"method": method, "epochs": epochs, "steps": train["steps"], "pretrain_seconds": seconds,
           "peak_rss_mib": peak_mib, "collapse_std_x_sqrt_d": train["collapse_std_x_sqrt_d"],
           "final_loss": train["loss"], "config": cfg.to_dict(), "machine": machine(),
           **{k: metrics[k] for k in ("linear_top1", "knn_top1", "random_linear_top1", "random_knn_top1",
                                      "gain_linear", "gain_knn")}, "evaluation": metrics}
    result.parent.mkdir(parents=True, exist_ok=True)
    result.write_text(json.dumps(row, indent=2, sort_keys=True) + "\n")


def run_supervised(epochs: int, data: Path, result: Path, params: Path) -> None:
    """The supervised ceiling at the shared budget: the baseline stage's supervised model (the preset's
    backbone, every train label, ``epochs`` at the pretraining's steps per epoch), next to the same
    backbone randomly initialised; written as a row of the table to ``result``."""
    from params_copy import params_with  # benchmarks/, on the path when run as a script
    from selfsup.eval.evaluate import baseline
    from selfsup.params import load_config

    overrides = {"epochs": epochs, "eval": {"supervised": {"enabled": True, "epochs": epochs}}}
    with params_with(params, overrides) as run_params:
        cfg = load_config(run_params)
        start = time.perf_counter()
        metrics = baseline(cfg, data)
        seconds = time.perf_counter() - start
    sup, rand = metrics["supervised"], metrics["random_backbone"]
    row = {"method": "supervised", "epochs": epochs, "classifier_top1": sup["top1"], "seconds": seconds,
           "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "config": cfg.to_dict(),
           "machine": machine(), "linear_top1": sup["linear_top1"], "knn_top1": sup["knn_top1"],
           "random_linear_top1": rand["linear_top1"], "random_knn_top1": rand["knn_top1"],
           "gain_linear": sup["linear_top1"] - rand["linear_top1"], "gain_knn": sup["knn_top1"] - rand["knn_top1"]}
    result.parent.mkdir(parents=True, exist_ok=True)
    result.write_text(json.dumps(row, indent=2, sort_keys=True) + "\n")


def supervised_line(r: dict) -> str:
    """The supervised row of the table (its own classifier's top-1 in the name; no collapse diagnostic)."""
    pct = {k: 100 * r[k] for k in ("linear_top1", "knn_top1", "random_linear_top1", "random_knn_top1",
                                    "gain_linear", "gain_knn")}
    return (f"| supervised, every train label (its classifier {100 * r['classifier_top1']:.1f}) "
            f"| {pct['linear_top1']:.1f} | {pct['knn_top1']:.1f} "
            f"| {pct['random_linear_top1']:.1f} | {pct['random_knn_top1']:.1f} "
            f"| {pct['gain_linear']:+.1f} | {pct['gain_knn']:+.1f} | {r['seconds']:.0f} | {r['peak_rss_mib']:.0f} | |")


def table(rows: list[dict]) -> str:
    lines = ["| method | linear % | kNN % | random linear % | random kNN % | gain linear | gain kNN "
             "| pretrain s | peak RSS MiB | collapse std x sqrt(d) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        pct = {k: 100 * r[k] for k in ("linear_top1", "knn_top1", "random_linear_top1", "random_knn_top1",
                                        "gain_linear", "gain_knn")}
        lines.append(f"| {r['method']} | {pct['linear_top1']:.1f} | {pct['knn_top1']:.1f} "
                     f"| {pct['random_linear_top1']:.1f} | {pct['random_knn_top1']:.1f} "
                     f"| {pct['gain_linear']:+.1f} | {pct['gain_knn']:+.1f} "
                     f"| {r['pretrain_seconds']:.0f} | {r['peak_rss_mib']:.0f} | {r['collapse_std_x_sqrt_d']:.2f} |")
    return "\n".join(lines)


def dataset_label(config: dict) -> str:
    """The dataset of a run's config, with every digits-bg setting that differs from its default."""
    from selfsup.config.image import DigitsBgConfig
    from selfsup.schema import to_dict

    if config["dataset"] != "digits-bg":
        return config["dataset"]
    spec = config.get("data", {}).get("digits_bg", {})
    changed = [f"{key}={spec[key]}" for key, default in to_dict(DigitsBgConfig()).items()
               if key in spec and spec[key] != default]
    return config["dataset"] + (f" ({', '.join(changed)})" if changed else "")


def machine() -> dict:
    return {"cpus": os.cpu_count(), "arch": platform.machine(), "torch": torch.__version__}


def render(folder: Path) -> str:
    """The Markdown table of the records in ``folder``, with a header made from the records alone."""
    from selfsup.methods import REGISTRY

    rows = [json.loads((folder / f"{m}.json").read_text()) for m in REGISTRY if (folder / f"{m}.json").is_file()]
    if not rows:
        raise SystemExit(f"no method records in {folder}; run benchmarks/methods_table.py --out {folder}")
    epochs = {r["epochs"] for r in rows}
    presets = {r["config"]["preset"] for r in rows}
    datasets = {dataset_label(r["config"]) for r in rows}
    machines = {json.dumps(r.get("machine"), sort_keys=True) for r in rows}
    where = ""
    if len(machines) == 1 and rows[0].get("machine"):
        m = rows[0]["machine"]
        where = f", on {m['cpus']} CPU cores ({m['arch']}), torch {m['torch']}"
    rel = folder.resolve().relative_to(REPO)
    supervised = folder / "supervised.json"
    ceiling = ""
    if supervised.is_file():
        row = json.loads(supervised.read_text())
        if row["epochs"] not in epochs:
            raise SystemExit(f"{supervised} ran {row['epochs']} epochs, the methods {sorted(epochs)}; rerun it with "
                             f"--supervised --epochs {min(epochs)}")
        ceiling = "\n" + supervised_line(row)
    return (f"Shared budget: {', '.join(map(str, sorted(epochs)))} epochs of the `{', '.join(sorted(presets))}` "
            f"preset for every method (its `per_method` settings apply){where}, on {', '.join(sorted(datasets))}. "
            f"Accuracies on the test split; `random` is the same feature extractor randomly initialised. "
            f"Records: `{rel}/<method>.json`" + (" and `supervised.json`: the same backbone trained with "
                                                 "cross-entropy on every train label for the same steps (the "
                                                 "baseline stage's supervised model), its frozen features probed "
                                                 "like the others" if ceiling else "")
            + ".\n\n" + table(rows) + ceiling)


def main() -> None:
    from selfsup.methods import REGISTRY

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=40, help="shared pretraining budget for every method")
    parser.add_argument("--methods", default="all", help="comma-separated names, or all")
    parser.add_argument("--data", type=Path, default=REPO / "data" / "images", help="prepared dataset")
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "records" / "methods")
    parser.add_argument("--force", action="store_true", help="rerun methods that have a cached result")
    parser.add_argument("--update", action="store_true",
                        help="then regenerate README.md and BENCHMARKS.md from the records (scripts/docs.py)")
    parser.add_argument("--supervised", action="store_true",
                        help="also (re)run the supervised row: the preset's backbone trained on every label")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one == "supervised":
        run_supervised(args.epochs, args.data, args.out / "supervised.json", args.params)
        return
    if args.one:
        run_one(args.one, args.epochs, args.data, args.out / f"{args.one}.json", args.params)
        return
    if not (args.data / "meta.json").is_file():
        raise SystemExit(f"no prepared dataset in {args.data}; run `dvc repro prepare_images` first")
    methods = list(REGISTRY) if args.methods == "all" else args.methods.split(",")
    unknown = sorted(set(methods) - set(REGISTRY))
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; known: {', '.join(REGISTRY)}")
    for method in methods:
        result = args.out / f"{method}.json"
        cached = json.loads(result.read_text()) if result.is_file() else None
        if args.force or cached is None or cached["epochs"] != args.epochs:
            print(f"== {method}: pretraining {args.epochs} epochs", flush=True)
            cmd = [sys.executable, __file__, "--one", method, "--epochs", str(args.epochs), "--data", str(args.data),
                   "--params", str(args.params), "--out", str(args.out)]
            proc = subprocess.run(cmd, env={**os.environ, "PYTHONHASHSEED": "0"})
            if proc.returncode:
                print(f"!! {method} failed with exit code {proc.returncode}", flush=True)
                continue
            cached = json.loads(result.read_text())
        print(table([cached]).splitlines()[-1], flush=True)
    if args.supervised:
        print("== supervised: every train label, the same steps", flush=True)
        cmd = [sys.executable, __file__, "--one", "supervised", "--epochs", str(args.epochs), "--data", str(args.data),
               "--params", str(args.params), "--out", str(args.out)]
        subprocess.run(cmd, env={**os.environ, "PYTHONHASHSEED": "0"}, check=True)
    print(render(args.out))
    if args.update:
        subprocess.run([sys.executable, str(REPO / "scripts" / "docs.py"), "--update"], check=True)


if __name__ == "__main__":
    main()

"""Every registered method on the prepared dataset at one shared budget: accuracy, time, memory.

Each method is pretrained in its own process (so its peak resident memory is its own), with the
repository's ``params.yaml`` and preset, the same number of epochs for all, then evaluated with
the same linear probe and kNN as the ``evaluate`` stage, next to a randomly initialised copy of
its own feature extractor. Results are recorded per method in ``--out`` (rerun one with
``--methods name --force``); the Markdown table is printed and, with ``--update``, the documents'
generated blocks are rewritten from the records (``scripts/docs.py``; BENCHMARKS.md's
``methods-table`` blocks name the record folder each one reads).

    python benchmarks/methods_table.py --epochs 40 --update
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
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]


def run_one(method: str, epochs: int, data: Path, result: Path, params: Path) -> None:
    """Pretrain and evaluate ``method`` in this process; write its row to ``result``."""
    from selfsup.eval.evaluate import evaluate
    from selfsup.params import load_config, load_params_yaml
    from selfsup.pretrain import pretrain

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shutil.copytree(params.parent / "params", tmp / "params")
        user = load_params_yaml(params.read_text())
        user.update(method=method, epochs=epochs)
        (tmp / "params.yaml").write_text(yaml.safe_dump(user, sort_keys=False))
        cfg = load_config(tmp / "params.yaml")
        start = time.perf_counter()
        train = pretrain(cfg, data, tmp / "out", tmp / "ck", track=False)
        seconds = time.perf_counter() - start
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        metrics = evaluate(cfg, data, tmp / "out" / "model.pt", {"raw_pixels": {"linear_top1": 0.0, "knn_top1": 0.0}})
    row = {"method": method, "epochs": epochs, "steps": train["steps"], "pretrain_seconds": seconds,
           "peak_rss_mib": peak_mib, "collapse_std_x_sqrt_d": train["collapse_std_x_sqrt_d"],
           "final_loss": train["loss"], "config": cfg.to_dict(), "machine": machine(),
           **{k: metrics[k] for k in ("linear_top1", "knn_top1", "random_linear_top1", "random_knn_top1",
                                      "gain_linear", "gain_knn")}}
    result.parent.mkdir(parents=True, exist_ok=True)
    result.write_text(json.dumps(row, indent=2, sort_keys=True) + "\n")


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
    return (f"Shared budget: {', '.join(map(str, sorted(epochs)))} epochs of the `{', '.join(sorted(presets))}` "
            f"preset for every method (its `per_method` settings apply){where}, on {', '.join(sorted(datasets))}. "
            f"Accuracies on the test split; `random` is the same feature extractor randomly initialised. "
            f"Records: `{rel}/<method>.json`.\n\n" + table(rows))


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
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
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
    print(render(args.out))
    if args.update:
        subprocess.run([sys.executable, str(REPO / "scripts" / "docs.py"), "--update"], check=True)


if __name__ == "__main__":
    main()

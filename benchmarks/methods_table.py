"""Every registered method on the prepared dataset at one shared budget: accuracy, time, memory.

Each method is pretrained in its own process (so its peak resident memory is its own), with the
repository's ``params.yaml`` and preset, the same number of epochs for all, then evaluated with
the same linear probe and kNN as the ``evaluate`` stage, next to a randomly initialised copy of
its own feature extractor. Results are cached per method in ``--out`` (rerun one with
``--methods name --force``); the Markdown table is printed and, with ``--update``, written into
BENCHMARKS.md between its ``methods-table`` markers (``--marker`` names another pair, for a
table on another prepared dataset, e.g. the plain-digits control of digits-bg).

    python benchmarks/methods_table.py --epochs 40 --update BENCHMARKS.md
    python stages/prepare_images.py -S data.digits_bg.background=black \
        -S data.digits_bg.digit_colour=white --out data/digits-plain
    python benchmarks/methods_table.py --epochs 40 --data data/digits-plain \
        --out benchmarks/records/methods-plain --marker methods-table-plain --update BENCHMARKS.md
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
    from selfsup.config import load_config, load_params_yaml
    from selfsup.eval.evaluate import evaluate
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
           "final_loss": train["loss"], "config": cfg.to_dict(),
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


def cached_rows(folder: Path, methods: list[str], epochs: int) -> list[dict]:
    """Every cached result in ``folder`` at ``epochs``, in registry order (a rerun of one keeps the rest)."""
    rows = []
    for method in methods:
        path = folder / f"{method}.json"
        if path.is_file():
            row = json.loads(path.read_text())
            if row["epochs"] == epochs:
                rows.append(row)
    return rows


def dataset_label(data: Path) -> str:
    """The prepared dataset's name, with every digits-bg setting that differs from its default."""
    from selfsup.config import DigitsBgConfig
    from selfsup.schema import to_dict

    meta = json.loads((data / "meta.json").read_text())
    if meta["dataset"] != "digits-bg":
        return meta["dataset"]
    spec = meta.get("data", {}).get("digits_bg", {})
    changed = [f"{key}={spec[key]}" for key, default in to_dict(DigitsBgConfig()).items()
               if key in spec and spec[key] != default]
    return meta["dataset"] + (f" ({', '.join(changed)})" if changed else "")


def update_section(path: Path, text: str, marker: str) -> None:
    START, END = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    doc = path.read_text()
    if START not in doc or END not in doc:
        raise SystemExit(f"{path} has no {START} ... {END} section to replace")
    head, rest = doc.split(START, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{START}\n{text}\n{END}{tail}")


def main() -> None:
    from selfsup.methods import REGISTRY

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=40, help="shared pretraining budget for every method")
    parser.add_argument("--methods", default="all", help="comma-separated names, or all")
    parser.add_argument("--data", type=Path, default=REPO / "data" / "images", help="prepared dataset")
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "records" / "methods")
    parser.add_argument("--force", action="store_true", help="rerun methods that have a cached result")
    parser.add_argument("--update", type=Path, default=None, help="write the table into this Markdown file")
    parser.add_argument("--marker", default="methods-table",
                        help="the <!-- MARKER:start/end --> pair in the --update file that the table replaces")
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
    rows = cached_rows(args.out, list(REGISTRY), args.epochs)
    cpu = platform.processor() or platform.machine()
    header = (f"Shared budget: {args.epochs} epochs of the `{rows[0]['config']['preset'] if rows else '?'}` preset "
              f"for every method (its `per_method` settings apply), on {os.cpu_count()} CPU cores ({cpu}), "
              f"torch {torch.__version__}, on {dataset_label(args.data)}. Accuracies on the test split; "
              f"`random` is the same feature extractor randomly initialised. Generated by "
              f"`python benchmarks/methods_table.py --epochs {args.epochs}"
              f"{'' if args.marker == 'methods-table' else f' --marker {args.marker}'}`.\n\n")
    text = header + table(rows)
    print(text)
    if args.update:
        update_section(args.update, text, args.marker)


if __name__ == "__main__":
    main()

"""Per-method recipe search on the prepared images: CMA-ES over two params, label-free fitness.

For each method in ``--spaces`` (default ``benchmarks/recipe_spaces.yaml``) the search stage's
library (``selfsup.search.study.run_search`` with ``search.target=image``) runs a CMA-ES study of
``--trials`` short pretrainings (``--trial-epochs`` each) scored by the Zipf-KL of the frozen
train-split features; no trial sees a label (each also records its kNN accuracy, which the sampler
is not told). The best trial's params are then pretrained at the shared budget (``--epochs``,
the methods table's) and evaluated with the same linear probe and kNN as the methods table,
so the found recipe and the preset's recipe are compared at one budget.

Written per method to ``--out/<method>/``: the study (a journal file, so an interrupted search
resumes), ``best.yaml``, ``trials.csv``/``.md``, ``metrics.json`` and ``verified.json`` (the
methods-table row of the best recipe at the shared budget).

    python benchmarks/recipe_search.py --methods byol,simsiam
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def search_config(method: str, space: dict, args: argparse.Namespace):
    """The search stage's config for ``method``: the repository's params with the study on top."""
    from selfsup.params import load_config

    return load_config(args.params, {"method": method, "search": {
        "target": "image", "space": space, "sampler": "cmaes", "n_trials": args.trials,
        "population": args.population, "epochs": args.trial_epochs, "n_workers": 1, "seed": 0,
        "study_name": f"recipe-{method}"}})


def verify(method: str, best: dict, args: argparse.Namespace, out: Path) -> None:
    """The methods-table row of ``method`` with ``best`` (nested params) over the repository's params."""
    from params_copy import params_with  # benchmarks/, on the path when run as a script

    with params_with(args.params, best) as run_params:
        tmp = run_params.parent
        cmd = [sys.executable, str(REPO / "benchmarks" / "methods_table.py"), "--one", method,
               "--epochs", str(args.epochs), "--data", str(args.data), "--params", str(run_params),
               "--out", str(tmp / "rows")]
        subprocess.run(cmd, check=True, env={**os.environ, "PYTHONHASHSEED": "0"})
        row = json.loads((tmp / "rows" / f"{method}.json").read_text())
    row["recipe"] = best
    (out / "verified.json").write_text(json.dumps(row, indent=2, sort_keys=True) + "\n")


def main() -> None:
    from selfsup.search.study import run_search

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default="all", help="comma-separated names from --spaces, or all")
    parser.add_argument("--spaces", type=Path, default=REPO / "benchmarks" / "recipe_spaces.yaml")
    parser.add_argument("--trials", type=int, default=8, help="completed trials per study")
    parser.add_argument("--population", type=int, default=4, help="CMA-ES population (generations = trials / this)")
    parser.add_argument("--trial-epochs", type=int, default=8, help="pretraining epochs of each trial")
    parser.add_argument("--epochs", type=int, default=40, help="the shared budget the best recipe is verified at")
    parser.add_argument("--data", type=Path, default=REPO / "data" / "images", help="prepared dataset")
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "records" / "recipe-search")
    parser.add_argument("--force", action="store_true", help="verify the best recipe again")
    args = parser.parse_args()
    if not (args.data / "meta.json").is_file():
        raise SystemExit(f"no prepared dataset in {args.data}; run `dvc repro prepare_images` first")
    spaces = yaml.safe_load(args.spaces.read_text())
    methods = list(spaces) if args.methods == "all" else args.methods.split(",")
    unknown = sorted(set(methods) - set(spaces))
    if unknown:
        raise SystemExit(f"no search space for {unknown} in {args.spaces}; it has {', '.join(spaces)}")
    for method in methods:
        out = args.out / method
        print(f"== {method}: {args.trials} trials of {args.trial_epochs} epochs over {spaces[method]}", flush=True)
        metrics = run_search(search_config(method, spaces[method], args), args.data, out / "study", out, track=False)
        print(f"   best trial {metrics['best_trial']}: zipf_kl {metrics['best_zipf_kl']:.5f}", flush=True)
        best = yaml.safe_load((out / "best.yaml").read_text())
        verified = out / "verified.json"
        if args.force or not verified.is_file() or json.loads(verified.read_text()).get("recipe") != best:
            print(f"   verifying {best} at {args.epochs} epochs", flush=True)
            verify(method, best, args, out)


if __name__ == "__main__":
    main()

"""Stage `search`: Optuna search of loss weights (or any numeric params) with the Zipf-KL fitness.

The study is kept in ``--study`` (a persistent output), so an interrupted search resumes where it
stopped; ``--out`` receives ``best.yaml`` (what ``elo_pretrain --overlay`` reads), the trials
table, and the metrics.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from selfsup.cli import run_stage, stage_parser
from selfsup.config import Config
from selfsup.search.study import run_search


def main(args: argparse.Namespace, cfg: Config) -> None:
    metrics = run_search(cfg, args.data, args.study, args.out, track=not args.no_mlflow)
    print(f"search: {metrics}")


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--data", type=Path, required=True,
                        help="video features (search.target=elo) or prepared images (search.target=image)")
    parser.add_argument("--study", type=Path, required=True, help="persistent folder holding the study")
    parser.add_argument("--out", type=Path, required=True, help="folder for best.yaml, trials and metrics")
    parser.add_argument("--no-mlflow", action="store_true", help="do not record MLflow runs")
    sys.exit(run_stage(main, parser, "search"))

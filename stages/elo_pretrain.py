"""Stage `elo_pretrain`: train the ELo networks on the unlabeled clips and keep the RGB network.

The loss weights are ``elo.weights`` from params.yaml, overlaid by ``--overlay`` (the search's
``best.yaml``). Resumes from its last checkpoint after an interruption.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from selfsup.cli import parse_tags, run_stage, stage_parser
from selfsup.config import Config
from selfsup.elo.run import elo_pretrain


def main(args: argparse.Namespace, cfg: Config) -> None:
    metrics = elo_pretrain(cfg, args.data, args.out, args.checkpoints, track=not args.no_mlflow,
                           tags=parse_tags(args.tag))
    print(f"elo_pretrain: {metrics}")


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--data", type=Path, required=True, help="video features folder (the extract stage)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--checkpoints", type=Path, required=True, help="checkpoint folder (persistent)")
    parser.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                        help="an extra MLflow tag for the run (e.g. --tag figure=background_ablation)")
    parser.add_argument("--no-mlflow", action="store_true", help="do not record an MLflow run")
    sys.exit(run_stage(main, parser, "elo_pretrain"))

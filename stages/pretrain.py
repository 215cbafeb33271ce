"""Stage `pretrain`: self-supervised pretraining of `method`; resumes from its last checkpoint.

Runs as one process, or as many under `torchrun --nproc_per_node=N stages/pretrain.py ...`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from selfsup.cli import parse_tags, run_stage, stage_parser
from selfsup.config import Config
from selfsup.pretrain import pretrain


def main(args: argparse.Namespace, cfg: Config) -> None:
    metrics = pretrain(cfg, args.data, args.out, args.checkpoints, track=not args.no_mlflow,
                       backgrounds_dir=args.backgrounds, tags=parse_tags(args.tag), model_dir=args.model_dir)
    print(f"pretrained {cfg.method}: {metrics}")


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    parser.add_argument("--out", type=Path, required=True, help="output folder: metrics.json, history.csv, config.yaml")
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="folder for model.pt, run.json and loss.png (default: --out)")
    parser.add_argument("--checkpoints", type=Path, required=True, help="checkpoint folder (persistent)")
    parser.add_argument("--backgrounds", type=Path, default=None,
                        help="background bank folder (the backgrounds stage), read when views.background is on")
    parser.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                        help="an extra MLflow tag for the run (e.g. --tag figure=background_ablation)")
    parser.add_argument("--no-mlflow", action="store_true", help="do not record an MLflow run")
    sys.exit(run_stage(main, parser, "pretrain"))

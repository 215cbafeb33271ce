"""Stage `translate`: unpaired digits-bg -> plain-digit translation with `translate.method` (CUT, FastCUT,
DCLGAN or CycleGAN); one MLflow run with its losses and sample grids; resumes from its last checkpoint."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from selfsup.cli import parse_tags, run_stage, stage_parser
from selfsup.config import Config
from selfsup.translate.train import run_translate


def main(args: argparse.Namespace, cfg: Config) -> None:
    metrics = run_translate(cfg, args.data, args.out, args.checkpoints, track=not args.no_mlflow,
                            tags=parse_tags(args.tag), model_dir=args.model_dir)
    print(f"translate {metrics['method']}: {metrics['steps']} steps, {metrics['seconds_per_step']:.3f} s/step, "
          f"peak {metrics['peak_rss_mib']:.0f} MiB")


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--data", type=Path, required=True, help="prepared digits-bg folder")
    parser.add_argument("--out", type=Path, required=True,
                        help="output folder: metrics.json, history.csv, config.yaml, samples/")
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="folder for model.pt and run.json (default: --out)")
    parser.add_argument("--checkpoints", type=Path, required=True, help="checkpoint folder (persistent)")
    parser.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="an extra MLflow tag")
    parser.add_argument("--no-mlflow", action="store_true", help="do not record an MLflow run")
    sys.exit(run_stage(main, parser, "translate"))

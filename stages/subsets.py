"""Stage `subsets`: class-balanced labeled subsets of the train split (one index file per fraction, like
SimCLR's published 1% and 10% ImageNet lists), read by every few-label arm."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from selfsup.cli import run_stage, stage_parser
from selfsup.config import Config
from selfsup.fewlabel.subsets import run_subsets


def main(args: argparse.Namespace, cfg: Config) -> None:
    summary = run_subsets(args.data, cfg.subsets.fractions, cfg.subsets.seed, args.out)
    sizes = ", ".join(f"{name}: {s['labels']} labels" for name, s in summary["subsets"].items())
    print(f"subsets of the {summary['train_images']} train images (seed {summary['seed']}): {sizes}")


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    parser.add_argument("--out", type=Path, required=True, help="folder for <percent>pct.txt and subsets.json")
    sys.exit(run_stage(main, parser, "subsets"))

"""Stage `segment`: foreground masks of the pretraining images without labels, and their IoU
against ground-truth masks where the dataset has them (digits-bg)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from selfsup.cli import run_stage, stage_parser
from selfsup.config import Config
from selfsup.io import write_json
from selfsup.prep.masks import segment


def main(args: argparse.Namespace, cfg: Config) -> None:
    metrics = segment(cfg, args.data, args.out)
    write_json(args.metrics, metrics)
    print(f"segment: {metrics}")


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    parser.add_argument("--out", type=Path, required=True, help="masks folder")
    parser.add_argument("--metrics", type=Path, required=True, help="metrics file (mask quality)")
    sys.exit(run_stage(main, parser, "segment"))

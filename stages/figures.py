"""Stage `figures`: every figure and table of the paper pipeline, from metrics files only."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from selfsup.cli import run_stage, stage_parser
from selfsup.config import Config
from selfsup.figures.ablation import write_ablation


def main(args: argparse.Namespace, cfg: Config) -> None:
    written = write_ablation(args.background_ablation, args.out)
    print("wrote " + ", ".join(str(p) for p in written))


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--background-ablation", type=Path, required=True,
                        help="folder of <method>-<variant>/evaluate/metrics.json runs")
    parser.add_argument("--out", type=Path, required=True, help="folder for the figures and tables")
    sys.exit(run_stage(main, parser))

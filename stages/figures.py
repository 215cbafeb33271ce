"""Stage `figures`: the paper pipeline's figures (PNG, SVG) and tables (Markdown, CSV), from metrics
files only, never by training; the same inputs give byte-identical files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from selfsup.cli import run_stage, stage_parser
from selfsup.config import Config
from selfsup.figures.ablation import write_ablation
from selfsup.figures.elo import write_elo
from selfsup.figures.search import write_search

WRITERS = {"background_ablation": write_ablation, "elo": write_elo, "search": write_search}


def main(args: argparse.Namespace, cfg: Config) -> None:
    written = []
    for name, write in WRITERS.items():
        folder = getattr(args, name)
        if folder is not None:
            written += write(folder, args.out)
    print("wrote " + ", ".join(str(p) for p in written))


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--background-ablation", type=Path, help="folder of <method>-<variant>/evaluate/metrics.json")
    parser.add_argument("--elo", type=Path, help="folder of <variant>/evaluate/metrics.json (elo_evaluate)")
    parser.add_argument("--search", type=Path, help="folder of <sampler>-s<seed>/trials.csv (search)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the figures and tables")
    args = parser.parse_args()
    if not any(getattr(args, name) for name in WRITERS):
        parser.error("give at least one of --background-ablation, --elo, --search")
    sys.exit(run_stage(main, parser))

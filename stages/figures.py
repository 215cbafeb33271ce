"""Stage `figures`: figures (PNG, SVG) and tables (Markdown, CSV) from metrics files only, never by
training; the same inputs give byte-identical files. The main DAG draws its one run, search and ELo
model; the paper pipeline draws every grid (`--runs`, `--elo`, `--search`, `--fewlabel`, `--translate` on its
folders)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from selfsup.cli import run_stage, stage_parser
from selfsup.config import Config
from selfsup.figures.ablation import write_ablation
from selfsup.figures.elo import write_elo
from selfsup.figures.fewlabel import write_fewlabel
from selfsup.figures.generative import write_generative
from selfsup.figures.headline import write_headline
from selfsup.figures.methods import write_methods
from selfsup.figures.runs import defaults_only, read_run, read_runs
from selfsup.figures.search import write_search
from selfsup.figures.sweeps import write_sweeps
from selfsup.figures.translation import write_translation
from selfsup.tracking import log_figures


def main(args: argparse.Namespace, cfg: Config) -> None:
    written = []
    if args.runs is not None:
        runs = read_runs(args.runs)
        written += write_methods(defaults_only(runs), args.out) + write_sweeps(runs, args.out)
        written += write_ablation(runs, args.out) + write_generative(runs, args.out)
    if args.run is not None:
        run = read_run(*args.run)
        written += write_methods({run.name: run}, args.out)
    if args.elo is not None:
        written += write_elo(args.elo, args.out)
    if args.search is not None:
        written += write_search(args.search, args.out)
    if args.fewlabel is not None:
        written += write_fewlabel(args.fewlabel, args.out)
    if args.translate is not None:
        written += write_translation(args.translate, args.out)
    if args.headline is not None:
        if args.run is None or args.elo is None:
            raise SystemExit("--headline needs --run and --elo: it takes their evaluate metrics")
        written.append(write_headline(args.run[1] / "metrics.json", args.elo / "metrics.json", args.headline))
    for run_json in args.log_to:
        if log_figures(run_json, [p for p in written if p.suffix in (".png", ".md")]):
            print(f"logged the figures to the MLflow run of {run_json}")
    print("wrote " + ", ".join(str(p) for p in written))


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--runs", type=Path,
                        help="folder of image runs <name>/{pretrain,evaluate} (the paper pipeline)")
    parser.add_argument("--run", type=Path, nargs=2, metavar=("PRETRAIN", "EVALUATE"),
                        help="one image run: the pretrain and evaluate stages' output folders (the main DAG)")
    parser.add_argument("--elo", type=Path,
                        help="an elo_evaluate output folder, or a folder of <variant>/evaluate folders")
    parser.add_argument("--search", type=Path,
                        help="a search output folder (trials.csv), or a folder of <sampler>-s<seed> studies")
    parser.add_argument("--fewlabel", type=Path,
                        help="a folder of few-label runs, <run>-<percent>pct/ and augment-<level>/ (paper pipeline)")
    parser.add_argument("--translate", type=Path,
                        help="a folder of translation runs, <run>/{train,eval} (the paper pipeline)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the figures and tables")
    parser.add_argument("--headline", type=Path, metavar="METRICS_JSON",
                        help="also write the image and video linear/kNN top-1 to this metrics file (the main DAG)")
    parser.add_argument("--log-to", type=Path, action="append", default=[], metavar="RUN_JSON",
                        help="also log the figures (PNG) and tables (Markdown) to the MLflow run in this run.json")
    args = parser.parse_args()
    if not any(getattr(args, name) for name in ("runs", "run", "elo", "search", "fewlabel", "translate")):
        parser.error("give at least one of --runs, --run, --elo, --search, --fewlabel, --translate")
    sys.exit(run_stage(main, parser, "figures"))

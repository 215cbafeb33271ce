"""Stage `baseline`: linear-probe and kNN accuracy of a random backbone and of raw pixels, and the supervised
ceiling (the same backbone trained on every train label: its top-1 and its frozen features' probes)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from selfsup.cli import run_stage, stage_parser
from selfsup.config import Config
from selfsup.eval.evaluate import baseline
from selfsup.io import write_json
from selfsup.params import save_config


def main(args: argparse.Namespace, cfg: Config) -> None:
    metrics = baseline(cfg, args.data)
    write_json(args.out / "metrics.json", metrics)
    save_config(cfg, args.out / "config.yaml")
    print(f"baselines: {metrics}")


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    sys.exit(run_stage(main, parser, "baseline"))

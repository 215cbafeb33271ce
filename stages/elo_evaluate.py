"""Stage `elo_evaluate`: linear probe, kNN and Zipf-KL of the ELo RGB network on the action labels."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from selfsup.cli import run_stage, stage_parser
from selfsup.config import Config
from selfsup.elo.run import elo_evaluate
from selfsup.eval.evaluate import summary
from selfsup.io import write_json
from selfsup.tracking import record_evaluation


def main(args: argparse.Namespace, cfg: Config) -> None:
    metrics, clusters = elo_evaluate(cfg, args.data, args.model)
    write_json(args.out / "metrics.json", metrics)
    write_json(args.out / "clusters.json", clusters)
    record_evaluation(args.run, metrics, "video", [args.out / "metrics.json", args.out / "clusters.json"],
                      f"{summary(metrics)}; Zipf-KL {metrics['zipf_kl']:.3f}")
    print(f"elo_evaluate: {metrics}")


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--data", type=Path, required=True, help="video features folder (the extract stage)")
    parser.add_argument("--model", type=Path, required=True, help="rgb.pt written by elo_pretrain")
    parser.add_argument("--run", type=Path, required=True, help="run.json written by elo_pretrain")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    sys.exit(run_stage(main, parser, "elo_evaluate"))

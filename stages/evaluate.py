"""Stage `evaluate`: linear probe and kNN on frozen features, next to the baselines."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from selfsup.cli import run_stage, stage_parser
from selfsup.config import Config
from selfsup.eval.evaluate import evaluate, summary
from selfsup.io import write_json
from selfsup.params import save_config
from selfsup.tracking import record_evaluation


def main(args: argparse.Namespace, cfg: Config) -> None:
    metrics = evaluate(cfg, args.data, args.model, json.loads(args.baseline.read_text()))
    write_json(args.out / "metrics.json", metrics)
    save_config(cfg, args.out / "config.yaml")
    record_evaluation(args.run, metrics, "image", [args.out / "metrics.json"], summary(metrics))
    print(f"evaluation: {metrics}")


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    parser.add_argument("--model", type=Path, required=True, help="model.pt written by pretrain")
    parser.add_argument("--run", type=Path, required=True, help="run.json written by pretrain")
    parser.add_argument("--baseline", type=Path, required=True, help="metrics.json written by baseline")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    sys.exit(run_stage(main, parser, "evaluate"))

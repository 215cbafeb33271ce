"""Stage `finetune`: the pretrained extractor fine-tuned end to end on a labeled subset, and the same
network from scratch on the same subset and budget; resumes each arm from its last checkpoint."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from selfsup.cli import run_stage, stage_parser
from selfsup.config import Config
from selfsup.fewlabel.finetune import run_finetune


def main(args: argparse.Namespace, cfg: Config) -> None:
    metrics = run_finetune(cfg, args.data, args.subsets, args.model, args.out, args.checkpoints,
                           pretrain_run=args.run, track=not args.no_mlflow,
                          model_dir=args.model_dir)
    print(f"finetune on {metrics['labels']} labels: pretrained {100 * metrics['finetuned_top1']:.1f}%, "
          f"from scratch {100 * metrics['scratch_top1']:.1f}% test top-1")


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    parser.add_argument("--subsets", type=Path, required=True, help="the subsets stage's folder")
    parser.add_argument("--model", type=Path, required=True, help="the pretrain stage's model.pt")
    parser.add_argument("--run", type=Path, default=None, help="the pretrain stage's run.json (its MLflow run id)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the classifiers and metrics.json")
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="folder for the classifier model files (default: --out)")
    parser.add_argument("--checkpoints", type=Path, required=True, help="checkpoint folder (persistent)")
    parser.add_argument("--no-mlflow", action="store_true", help="do not record MLflow runs")
    sys.exit(run_stage(main, parser, "finetune"))

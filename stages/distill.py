"""Stage `distill`: SimCLR v2's distillation (Eq. 2, or Eq. 3 with labels) of the fine-tuned classifier
into a student on every train image with its label hidden; resumes from its last checkpoint."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from selfsup.cli import run_stage, stage_parser
from selfsup.config import Config
from selfsup.fewlabel.distill import run_distill


def main(args: argparse.Namespace, cfg: Config) -> None:
    metrics = run_distill(cfg, args.data, args.subsets, args.teacher, args.out, args.checkpoints,
                          teacher_runs=args.teacher_runs, track=not args.no_mlflow,
                          model_dir=args.model_dir)
    print(f"distill: student {100 * metrics['student_top1']:.1f}%, teacher {100 * metrics['teacher_top1']:.1f}% "
          f"test top-1")


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    parser.add_argument("--subsets", type=Path, required=True, help="the subsets stage's folder")
    parser.add_argument("--teacher", type=Path, required=True, help="the finetune stage's finetuned.pt")
    parser.add_argument("--teacher-runs", type=Path, default=None, help="the finetune stage's runs.json")
    parser.add_argument("--out", type=Path, required=True, help="folder for student.pt and metrics.json")
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="folder for the classifier model files (default: --out)")
    parser.add_argument("--checkpoints", type=Path, required=True, help="checkpoint folder (persistent)")
    parser.add_argument("--no-mlflow", action="store_true", help="do not record MLflow runs")
    sys.exit(run_stage(main, parser, "distill"))

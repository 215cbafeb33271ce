"""Stage `translate_eval`: paired error against the known answers, content kept (a judge trained on real
plain digits) and FID/KID of a translation model, next to the identity, black-background and ground-truth
references."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from selfsup.cli import run_stage, stage_parser
from selfsup.config import Config
from selfsup.params import save_config
from selfsup.translate.evaluate import run_translate_eval


def main(args: argparse.Namespace, cfg: Config) -> None:
    metrics = run_translate_eval(cfg, args.data, args.model, args.out, args.run, args.inception)
    save_config(cfg, args.out / "config.yaml")
    s, black = metrics["translation"], metrics["baselines"]["black_background"]
    print(f"translate_eval {metrics['method']}: L1 {s['l1']:.3f} (black background {black['l1']:.3f}), "
          f"content {100 * s['content']:.1f}% ({100 * black['content']:.1f}%), FID (judge) {s['fid']:.2f}")


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--data", type=Path, required=True, help="prepared digits-bg folder")
    parser.add_argument("--model", type=Path, required=True, help="model.pt written by translate")
    parser.add_argument("--run", type=Path, default=None, help="run.json written by translate (its MLflow run)")
    parser.add_argument("--out", type=Path, required=True, help="output folder: metrics.json, panel.npy, config.yaml")
    parser.add_argument("--inception", type=Path, default=None,
                        help="torchvision Inception-v3 weights file: adds FID/KID in Inception space")
    sys.exit(run_stage(main, parser, "translate_eval"))

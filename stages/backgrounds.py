"""Stage `backgrounds`: the masks and foreground-free backgrounds that background augmentation
reads, or, with every background augmentation off, only a marker saying so."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from selfsup.cli import run_stage, stage_parser
from selfsup.config import Config
from selfsup.prep.masks import build_backgrounds


def main(args: argparse.Namespace, cfg: Config) -> None:
    meta = build_backgrounds(cfg, args.data, args.masks, args.out)
    print(f"backgrounds: {meta}")


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    parser.add_argument("--masks", type=Path, required=True, help="the segment stage's masks folder")
    parser.add_argument("--out", type=Path, required=True, help="background bank folder")
    sys.exit(run_stage(main, parser, "backgrounds"))

"""Stage `prepare_images`: materialise the chosen image dataset in the prepared format."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from selfsup.cli import run_stage, stage_parser
from selfsup.config import Config
from selfsup.data.prepare import prepare_images


def main(args: argparse.Namespace, cfg: Config) -> None:
    meta = prepare_images(cfg, args.out)
    print(f"prepared {meta['dataset']}: {meta['splits']} images of size {meta['image_size']} in {args.out}")


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--out", type=Path, required=True, help="prepared dataset folder")
    sys.exit(run_stage(main, parser, "prepare_images"))

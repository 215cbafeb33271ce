"""Stage `prepare_video`: write the chosen video dataset's clips (synthetic-actions, encoded to MP4)
or index (a class-per-folder video tree, indexed in place) in the prepared layout."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from selfsup.cli import run_stage, stage_parser
from selfsup.config import Config
from selfsup.data.video import prepare_video


def main(args: argparse.Namespace, cfg: Config) -> None:
    start = time.perf_counter()
    meta = prepare_video(cfg, args.out)
    print(f"prepared {meta['dataset']}: {meta['splits']} clips of {len(meta['classes'])} classes in {args.out} "
          f"({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--out", type=Path, required=True, help="prepared video folder")
    sys.exit(run_stage(main, parser, "prepare_video"))

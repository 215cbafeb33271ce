"""Stage `extract`: decode every prepared clip with ffmpeg, compute its optical flow (OpenCV) and
the log-mel spectrogram of its audio, and report the clips skipped and the throughput."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from selfsup.cli import run_stage, stage_parser
from selfsup.config import Config
from selfsup.io import write_json
from selfsup.prep.extract import extract


def main(args: argparse.Namespace, cfg: Config) -> None:
    metrics = extract(cfg, args.video, args.out)
    write_json(args.metrics, metrics)
    print(f"extract: {metrics}")


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--video", type=Path, required=True, help="prepared video folder")
    parser.add_argument("--out", type=Path, required=True, help="extracted features folder")
    parser.add_argument("--metrics", type=Path, required=True, help="metrics file (clips, skipped, throughput)")
    sys.exit(run_stage(main, parser, "extract"))

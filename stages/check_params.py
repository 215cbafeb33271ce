"""Stage `check_params`: validate params.yaml with its preset and method defaults, first.

Every other stage depends on its marker file, whose content never changes, so a bad knob stops
`dvc repro` / `dvc exp run` here, before any data or result is touched, while a good change does
not by itself rerun anything downstream.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from selfsup.cli import run_stage, stage_parser
from selfsup.config import Config
from selfsup.io import atomic_write_text
from selfsup.methods import DataInfo, build_method


def main(args: argparse.Namespace, cfg: Config) -> None:
    build_method(cfg, DataInfo(n_images=cfg.batch_size))  # knobs checked against each other and the sizes
    if not args.marker.is_file() or args.marker.read_text() != "ok\n":
        atomic_write_text(args.marker, "ok\n")
    print(f"params are valid: method={cfg.method}, preset={cfg.preset}, dataset={cfg.dataset}")


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--marker", type=Path, required=True, help="file written when the params are valid")
    sys.exit(run_stage(main, parser))

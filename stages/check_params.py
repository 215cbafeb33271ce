"""Stage `check_params`: validate params.yaml with its preset and method defaults, first; then write
each stage's resolved params.

A bad knob stops `dvc repro` / `dvc exp run` here, before any data or result is touched. Every
other stage depends on its own `<out-dir>/<stage>.yaml`, which holds the resolved values of exactly
what that stage reads (see selfsup.stage_config); a file whose values did not change is left as it
was, so a change reruns only the stages that read it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from selfsup.cli import run_stage, stage_parser
from selfsup.config import Config
from selfsup.methods import DataInfo, build_method
from selfsup.stage_config import STAGE_SECTIONS, write_stage_params


def main(args: argparse.Namespace, cfg: Config) -> None:
    build_method(cfg, DataInfo(n_images=cfg.batch_size))  # knobs checked against each other and the sizes
    stages = args.stages or [stage for stage, sections in STAGE_SECTIONS.items() if sections]
    for stage in stages:
        write_stage_params(cfg, stage, args.out_dir / f"{stage}.yaml")
    print(f"params are valid: method={cfg.method}, preset={cfg.preset}, dataset={cfg.dataset}; "
          f"resolved params of {', '.join(stages)} in {args.out_dir}")


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--out-dir", type=Path, required=True, help="folder for the resolved <stage>.yaml files")
    parser.add_argument("--stages", nargs="+", choices=sorted(s for s, sections in STAGE_SECTIONS.items() if sections),
                        help="the stages to write resolved params for (default: all)")
    sys.exit(run_stage(main, parser, None))

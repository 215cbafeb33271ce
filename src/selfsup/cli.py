"""Shared plumbing of the stage scripts: logging, config loading, and clean error exits."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from selfsup.config import Config, deep_merge, load_config, parse_overrides, read_overlay
from selfsup.errors import ConfigError, SelfSupError


def stage_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file")
    parser.add_argument("--overlay", type=Path, action="append", default=[], metavar="YAML",
                        help="a params-form file applied over params.yaml (e.g. the search stage's best.yaml)")
    parser.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a param after params.yaml (e.g. -S method=moco); pipelines/ grids use it")
    return parser


def parse_tags(pairs: list[str]) -> dict[str, str]:
    """``--tag figure=background_ablation`` pairs as MLflow tags."""
    tags = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--tag expects KEY=VALUE (e.g. --tag figure=search), got {pair!r}")
        tags[key] = value
    return tags


def _interrupt_on_sigterm() -> None:
    """``kill`` (SIGTERM) unwinds like Ctrl-C: MLflow runs are marked KILLED, temporary files removed."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def run_stage(main: Callable[[argparse.Namespace, Config], None], parser: argparse.ArgumentParser,
              argv: list[str] | None = None) -> int:
    """Parse args, load and validate the config, run ``main``; a SelfSupError exits 1 with its message."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    args = parser.parse_args(argv)
    _interrupt_on_sigterm()
    try:
        cfg = load_config(args.params, deep_merge(*map(read_overlay, args.overlay), parse_overrides(args.set)))
        main(args, cfg)
    except SelfSupError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0

"""Shared plumbing of the stage scripts: logging, config loading, and clean error exits."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from selfsup.config import Config
from selfsup.errors import ConfigError, SelfSupError
from selfsup.io import check_writable
from selfsup.params import deep_merge, load_config, parse_overrides, read_overlay
from selfsup.stage_config import load_stage_params, restrict, stage_sections


def stage_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", type=Path, default=None, metavar="YAML",
                        help="this stage's resolved params, written by check_params (results/config/<stage>.yaml); "
                             "without it the stage resolves --params itself")
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


# Arguments that name what a stage writes; each is checked writable before any work starts.
OUTPUT_ARGS = ("out", "out_dir", "model_dir", "metrics", "checkpoints", "study")


def stage_config(args: argparse.Namespace, stage: str | None) -> Config:
    """The config ``stage`` runs with, restricted to the sections it declares (see selfsup.stage_config);
    ``stage=None`` (check_params) gets the whole config."""
    if stage is not None and not stage_sections(stage):
        return restrict(Config(), stage)  # reads no params (figures): params.yaml is not even opened
    overrides = deep_merge(*map(read_overlay, args.overlay), parse_overrides(args.set))
    if args.config is not None:
        if stage is None:
            raise ConfigError("--config takes one stage's resolved params; resolve params.yaml with --params")
        return load_stage_params(args.config, stage, overrides)
    cfg = load_config(args.params, overrides)
    return cfg if stage is None else restrict(cfg, stage)


def run_stage(main: Callable[[argparse.Namespace, Config], None], parser: argparse.ArgumentParser, stage: str | None,
              argv: list[str] | None = None) -> int:
    """Parse args, load and validate the config, check the outputs are writable, run ``main``.

    A SelfSupError exits 1 with its message.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    args = parser.parse_args(argv)
    _interrupt_on_sigterm()
    try:
        cfg = stage_config(args, stage)
        for name in OUTPUT_ARGS:
            if getattr(args, name, None) is not None:
                check_writable(Path(getattr(args, name)), f"--{name.replace('_', '-')}")
        main(args, cfg)
    except SelfSupError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0

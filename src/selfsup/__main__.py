"""`selfsup` command line: inspect the resolved configuration.

    selfsup config                       # the resolved config of params.yaml, as YAML
    selfsup config -S method=barlow -S lambda=5e-3
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from selfsup.config import load_config
from selfsup.errors import SelfSupError


def _override(pairs: list[str]) -> dict:
    out: dict = {}
    for pair in pairs:
        if "=" not in pair:
            raise SystemExit(f"-S expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(value)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="selfsup", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("config", help="print the resolved configuration")
    show.add_argument("--params", type=Path, default=Path("params.yaml"))
    show.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.params, _override(args.set))
    except SelfSupError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

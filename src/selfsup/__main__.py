"""`selfsup` command line: inspect the resolved configuration and the methods.

    selfsup config                       # the resolved config of params.yaml, as YAML
    selfsup config -S method=barlow -S lambda=5e-3
    selfsup methods                      # every method: its paper and its knobs with defaults
    selfsup methods byol                 # one method
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import yaml

from selfsup.config import load_config, parse_overrides
from selfsup.errors import SelfSupError
from selfsup.schema import param_key


def describe_methods(names: list[str]) -> str:
    """Each method's paper (the first lines of its module docstring) and its knobs."""
    from selfsup.methods import REGISTRY

    unknown = sorted(set(names) - set(REGISTRY))
    if unknown:
        raise SystemExit(f"unknown method {unknown[0]!r}; known: {', '.join(REGISTRY)}")
    blocks = []
    for name in names or list(REGISTRY):
        cls = REGISTRY[name]
        doc = (sys.modules[cls.__module__].__doc__ or "").strip().split("\n\n")
        lines = [f"{name}: {' '.join(doc[0].split())}"]
        if len(doc) > 1:
            lines.append(f"  {' '.join(doc[1].split())}")
        for f in dataclasses.fields(cls.Knobs):
            lines.append(f"  {param_key(f)} = {f.default!r}  {f.metadata.get('doc', '')}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="selfsup", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("config", help="print the resolved configuration")
    show.add_argument("--params", type=Path, default=Path("params.yaml"))
    show.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE")
    methods = sub.add_parser("methods", help="list the methods, their papers and knobs")
    methods.add_argument("names", nargs="*", help="methods to describe (default: all)")
    args = parser.parse_args(argv)
    if args.command == "methods":
        print(describe_methods(args.names))
        return 0
    try:
        cfg = load_config(args.params, parse_overrides(args.set))
    except SelfSupError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

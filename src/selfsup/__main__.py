"""`selfsup` command line: inspect the resolved configuration and the methods.

    selfsup config                       # the resolved config of params.yaml, each value with its source
    selfsup config --changed             # only what differs from the schema defaults
    selfsup config -S method=barlow -S lambda=5e-3
    selfsup methods                      # every method: its paper, its knobs' paper defaults and what
                                         # params.yaml and its preset make of them
    selfsup methods byol                 # one method
    selfsup runs                         # every DVC experiment: what it changed, what it scored
    selfsup dag                          # the main DAG, one line per stage with the stages it reads
    selfsup dag pipelines/paper/dvc.yaml # the paper pipeline
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from selfsup.config_view import render, sources
from selfsup.dag_view import dag_table
from selfsup.errors import SelfSupError
from selfsup.experiments import experiments_table
from selfsup.params import parse_overrides
from selfsup.schema import param_key


def describe_methods(names: list[str], params: Path | None = None) -> str:
    """Each method's paper (the first lines of its module docstring) and its knobs with their paper
    defaults; with ``params``, also the value each knob resolves to there and the layer that sets it."""
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
        resolved = sources(params, {"method": name}) if params is not None and params.is_file() else None
        for f in dataclasses.fields(cls.Knobs):
            key = param_key(f)
            here = ""
            if resolved is not None and resolved[2][key] != "default" and resolved[1][key] != f.default:
                here = f"  [here {resolved[1][key]!r}, from {resolved[2][key]}]"
            lines.append(f"  {key} = {f.default!r}{here}  {f.metadata.get('doc', '')}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="selfsup", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("config", help="print the resolved configuration")
    show.add_argument("--params", type=Path, default=Path("params.yaml"))
    show.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE")
    show.add_argument("--changed", action="store_true", help="only the values that differ from the schema defaults")
    sub.add_parser("runs", help="the headline table of the DVC experiments (what each changed, what it scored)")
    dag = sub.add_parser("dag", help="the pipeline, one line per stage with the stages it reads from")
    dag.add_argument("targets", nargs="*", default=["dvc.yaml"],
                     help="stages or dvc.yaml files, as for `dvc dag` (default: the main DAG, dvc.yaml)")
    methods = sub.add_parser("methods", help="list the methods, their papers and knobs")
    methods.add_argument("names", nargs="*", help="methods to describe (default: all)")
    methods.add_argument("--params", type=Path, default=Path("params.yaml"),
                         help="also show what each knob resolves to with this params file and its preset")
    args = parser.parse_args(argv)
    if args.command in ("runs", "dag"):
        try:
            print(experiments_table(".") if args.command == "runs" else dag_table(args.targets), end="")
        except SelfSupError as exc:
            print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.command == "methods":
        try:
            print(describe_methods(args.names, args.params))
        except SelfSupError as exc:
            print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        return 0
    try:
        cfg, values, source = sources(args.params, parse_overrides(args.set))
    except SelfSupError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"# method={cfg.method}, preset={cfg.preset}; each value's source: `default` (src/selfsup/config/), "
          f"the method's paper defaults, the preset, params.yaml or -S", end="\n")
    print(render(cfg, values, source, changed_only=args.changed), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

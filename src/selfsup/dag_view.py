"""``selfsup dag``: the DVC pipeline as one line per stage with the stages it reads from.

``dvc dag`` draws the graph in ASCII; ``check_params`` feeds every stage, so the drawing of the main DAG
is about 300 characters wide and that of both pipelines several thousand. This lists the same edges
(from ``dvc dag --dot``) in pipeline order, with the stages of one ``foreach`` grouped
(``pretrain@{barlow, byol}``), a stage of another ``dvc.yaml`` named after its folder
(``paper:figures`` for ``pipelines/paper/dvc.yaml:figures``), wrapped to the terminal.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import textwrap
from collections import defaultdict
from pathlib import Path

from selfsup.errors import SelfSupError

EDGE = re.compile(r'^"(?P<src>[^"]+)" -> "(?P<dst>[^"]+)";$')
NODE = re.compile(r'^"(?P<name>[^"]+)";$')


def short(name: str) -> str:
    """``pipelines/paper/dvc.yaml:figures`` -> ``paper:figures``; a stage of ./dvc.yaml keeps its name."""
    path, sep, stage = name.rpartition(":")
    return f"{Path(path).parent.name}:{stage}" if sep else name


def group(names: list[str]) -> str:
    """``a, b@x, b@y`` -> ``a, b@{x, y}``, first-seen order."""
    groups: dict[str, list[str]] = defaultdict(list)
    for name in names:
        stem, sep, item = short(name).partition("@")
        groups[stem + sep].append(item)
    return ", ".join(stem if not stem.endswith("@") else
                     stem + (items[0] if len(items) == 1 else "{" + ", ".join(items) + "}")
                     for stem, items in groups.items())


def table(dot: str, width: int = 120) -> str:
    """One line per stage of a ``dvc dag --dot`` graph: ``stage  <- upstream stages``."""
    nodes: list[str] = []
    upstream: dict[str, list[str]] = defaultdict(list)
    for line in dot.splitlines():
        line = line.strip()
        if edge := EDGE.match(line):
            upstream[edge["dst"]].append(edge["src"])
        elif node := NODE.match(line):
            nodes.append(node["name"])
    order = _topological(nodes, upstream)
    pad = max(len(short(n)) for n in order) + 2
    lines = []
    for name in order:
        text = f"<- {group(upstream[name])}" if upstream[name] else "(reads only params and data files)"
        lines += textwrap.wrap(text, width=max(width, pad + 40), initial_indent=short(name).ljust(pad),
                               subsequent_indent=" " * (pad + 3), break_on_hyphens=False)
    return "\n".join(lines) + "\n"


def _topological(nodes: list[str], upstream: dict[str, list[str]]) -> list[str]:
    done: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        for parent in upstream[name]:
            visit(parent)
        done.append(name)

    for name in nodes:
        visit(name)
    return done


def dag_table(targets: list[str], repo: str = ".") -> str:
    """The stages of ``dvc dag --dot TARGETS`` (default: every pipeline) as :func:`table` lines."""
    proc = subprocess.run(["dvc", "dag", "--dot", *targets], cwd=repo, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SelfSupError(f"`dvc dag --dot {' '.join(targets)}` failed in {repo}: {proc.stderr.strip()[-500:]}")
    return table(proc.stdout, width=shutil.get_terminal_size((120, 24)).columns)

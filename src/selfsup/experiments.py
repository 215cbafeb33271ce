"""The headline table of the DVC experiments (``selfsup runs``): what each changed and what it scored.

``dvc exp show`` lists every param of ``params.yaml`` and every dependency of both pipelines. This
keeps one line per commit and experiment: the params that differ from the commit the experiment
started from (for the workspace: from HEAD), and the main DAG's headline numbers (image and video
linear probe and kNN, ``results/metrics.json``), read from ``dvc exp show --json``.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from selfsup.errors import SelfSupError
from selfsup.schema import flatten

HEADLINE = "results/metrics.json"
COLUMNS = (("image linear", "image", "linear_top1"), ("image kNN", "image", "knn_top1"),
           ("video linear", "video", "linear_top1"), ("video kNN", "video", "knn_top1"))


def _data(entry: dict, kind: str, path: str) -> dict:
    return ((entry.get(kind) or {}).get(path) or {}).get("data") or {}


def _line(name: str, entry: dict, base: dict[str, Any]) -> list[str]:
    params = flatten(_data(entry, "params", "params.yaml"))
    changed = ", ".join(f"{k}={v}" for k, v in params.items() if v != base.get(k) and v not in (None, {}))
    cells = []
    headline = _data(entry, "metrics", HEADLINE)
    for _, section, key in COLUMNS:
        value = (headline.get(section) or {}).get(key)
        cells.append("-" if not isinstance(value, (int, float)) else f"{100 * value:.1f}")
    return [name, *cells, changed or "-"]


def table(shown: list[dict]) -> str:
    """Plain-text table of ``dvc exp show --json`` output, accuracies in percent."""
    lines = []
    commits = [flatten(_data(c.get("data") or {}, "params", "params.yaml")) for c in shown if c["rev"] != "workspace"]
    head = commits[0] if commits else {}
    for commit in shown:
        data = commit.get("data") or {}
        workspace = commit["rev"] == "workspace"
        label = commit.get("name") or (commit["rev"] if workspace else commit["rev"][:7])
        base = flatten(_data(data, "params", "params.yaml"))
        lines.append(_line(label, data, head if workspace else base))
        for experiment in commit.get("experiments") or []:
            for rev in experiment.get("revs") or []:
                lines.append(_line(f"  {rev.get('name') or rev['rev'][:7]}", rev.get("data") or {}, base))
    header = ["experiment", *(title for title, _, _ in COLUMNS), "params that differ from its commit"]
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header) - 1)]
    return "".join("  ".join(c.ljust(w) for c, w in zip(line[:-1], widths, strict=True)) + "  " + line[-1] + "\n"
                   for line in [header, *lines])


def experiments_table(repo: str = ".") -> str:
    """The table of the workspace, the commits and the experiments of the DVC project at ``repo``."""
    proc = subprocess.run(["dvc", "exp", "show", "--json"], cwd=repo, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SelfSupError(f"`dvc exp show --json` failed in {repo}: {proc.stderr.strip()[-500:]}")
    return table(json.loads(proc.stdout))

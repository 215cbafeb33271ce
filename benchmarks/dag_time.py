"""Wall time of the README's first command on a fresh clone: `pip install -e . && dvc repro`.

Clones the repository (its committed state) into a temporary folder, times the install (packages
already in the Python environment) and `dvc repro`, and times each stage from the moment DVC
starts it to the moment the next one starts (DVC's own bookkeeping included). Writes a JSON record
that BENCHMARKS.md and the README are generated from (`python scripts/docs.py --update`).

    python benchmarks/dag_time.py --out benchmarks/records/dag_time.json
    python benchmarks/dag_time.py --keep /tmp/clone   # keep the clone, e.g. to pull its results
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def machine() -> dict:
    import torch

    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in (cpuinfo.read_text().splitlines() if cpuinfo.is_file() else [])
             if line.startswith("model name")]
    return {"cpu": names[0] if names else platform.machine(), "cpus": os.cpu_count(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
            "python": platform.python_version(), "torch": torch.__version__, "gpu": torch.cuda.is_available()}


def timed_repro(clone: Path) -> tuple[float, dict[str, float]]:
    """Run `dvc repro` in ``clone``, echoing its output; total seconds and seconds per stage."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    start = time.perf_counter()
    proc = subprocess.Popen(["dvc", "repro"], cwd=clone, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)
    starts: list[tuple[str, float]] = []
    for line in proc.stdout:
        sys.stdout.write(line)
        if line.startswith("Running stage '"):
            starts.append((line.split("'")[1], time.perf_counter()))
    if proc.wait():
        raise SystemExit(f"dvc repro failed with exit code {proc.returncode}")
    end = time.perf_counter()
    bounds = [t for _, t in starts[1:]] + [end]
    return end - start, {name: round(stop - t, 1) for (name, t), stop in zip(starts, bounds, strict=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/records/dag_time.json")
    parser.add_argument("--keep", type=Path, default=None, help="clone here and keep it (default: a temp folder)")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="selfsup-dag-"))
    clone = root if args.keep else root / "clone"
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                            check=True).stdout.strip()
    try:
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "."], cwd=clone, check=True)
        install = time.perf_counter() - start
        total, stages = timed_repro(clone)
    finally:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", str(REPO)], check=True)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    record = {"command": "pip install -e . && dvc repro", "commit": commit, "install_seconds": round(install, 1),
              "repro_seconds": round(total, 1), "stages": stages, "machine": machine()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()

"""Cost of each translation method per training step, measured side by side in one run.

The CUT paper (Park et al. 2020, Table 1) reports CUT lighter and faster to train than CycleGAN and
FastCUT the fastest. Each method here runs in its own process (so peak memory is its own) on the
prepared digits-bg (``--data``), with the resolved ``translate`` settings of ``--params`` (default
widths, batch and patches): ``--warmup`` steps, then ``--steps`` timed steps. The methods take turns
over ``--rounds`` rounds, so a load change on the machine hits every method alike; the record keeps
each round and the median.

    python benchmarks/translate_cost.py                      # data/images, 3 rounds of 30 steps
    python benchmarks/translate_cost.py --threads 2 --rounds 5

The JSON record (``--out``) is what BENCHMARKS.md's cost table is generated from.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from selfsup.config.translate import TRANSLATE_METHODS
from selfsup.io import write_json
from selfsup.loop import Optimisation
from selfsup.params import load_config
from selfsup.stage_config import restrict
from selfsup.translate.domains import build_domains
from selfsup.translate.train import TranslationTask

ORDER = ("cyclegan", "cut", "fastcut", "dclgan")


def measure(method: str, params: Path, data: Path, warmup: int, steps: int, threads: int) -> dict:
    """One method's seconds per step (after ``warmup``) and this process's peak resident memory."""
    torch.set_num_threads(threads)
    cfg = load_config(params, {"translate": {"method": method}})
    cfg = restrict(cfg, "translate")
    domains = build_domains(data, cfg.translate.split_seed)
    device = torch.device("cpu")
    task = TranslationTask(cfg, domains, device, settings={})
    opt = Optimisation(device, amp=False)
    for step in range(warmup):
        task.train_step(step, opt)
    start = time.perf_counter()
    for step in range(warmup, warmup + steps):
        task.train_step(step, opt)
    seconds = time.perf_counter() - start
    parameters = sum(p.numel() for p in task.model.parameters())
    return {"seconds_per_step": seconds / steps, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            / 1024, "parameters": parameters}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data/images"), help="prepared digits-bg folder")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--one", choices=TRANSLATE_METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/records/translate_cost.json"))
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.params, args.data, args.warmup, args.steps, args.threads)))
        return
    rounds: dict[str, list[dict]] = {m: [] for m in ORDER}
    for r in range(args.rounds):
        for method in ORDER:
            cmd = [sys.executable, __file__, "--one", method, "--data", str(args.data), "--params", str(args.params),
                   "--warmup", str(args.warmup), "--steps", str(args.steps), "--threads", str(args.threads)]
            result = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            rounds[method].append(result)
            print(f"round {r + 1}/{args.rounds} {method:9s} {result['seconds_per_step']:.3f} s/step, "
                  f"peak {result['peak_rss_mib']:.0f} MiB", flush=True)
    methods = {m: {"seconds_per_step": statistics.median(x["seconds_per_step"] for x in runs),
                   "peak_rss_mib": statistics.median(x["peak_rss_mib"] for x in runs),
                   "parameters": runs[0]["parameters"], "rounds": runs} for m, runs in rounds.items()}
    base = methods["cyclegan"]["seconds_per_step"]
    for m, v in methods.items():
        print(f"{m:9s} {v['seconds_per_step']:.3f} s/step ({v['seconds_per_step'] / base:.2f}x CycleGAN), "
              f"peak {v['peak_rss_mib']:.0f} MiB, {v['parameters']:,} parameters")
    write_json(args.out, {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
                          "load_average_at_end": list(os.getloadavg()), "threads": args.threads,
                          "warmup": args.warmup, "steps": args.steps, "methods": methods})


if __name__ == "__main__":
    main()

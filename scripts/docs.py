"""The numbers in README.md and BENCHMARKS.md, generated from committed records.

Every measured number in the two documents sits in a generated block,

    <!-- generated: NAME -->
    ...
    <!-- end: NAME -->

whose text the renderer ``NAME`` below writes from records kept in git only: the DAGs' metrics,
resolved configs and figure tables under ``results/`` (``cache: false`` outputs) and the
benchmark records under ``benchmarks/records/``. ``--update`` rewrites the blocks; ``--check``
(what ``tests/test_docs.py`` runs) fails naming every block whose text differs from its records.

    python scripts/docs.py --update
    python scripts/docs.py --check
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "BENCHMARKS.md")
BLOCK = re.compile(r"(<!-- generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end: (?P=name) -->)", re.S)
RECORDS = REPO / "benchmarks" / "records"


def _json(path: Path) -> dict:
    return json.loads((REPO / path).read_text())


def _yaml(path: Path) -> dict:
    return yaml.safe_load((REPO / path).read_text())


def _text(path: Path) -> str:
    return (REPO / path).read_text().rstrip("\n")


def _csv(path: Path) -> list[dict]:
    with open(REPO / path, newline="") as f:
        return list(csv.DictReader(f))


def pct(fraction: float) -> str:
    return f"{100 * fraction:.1f}%"


def points(fraction: float) -> str:
    return f"{100 * fraction:+.1f}"


def duration(seconds: float) -> str:
    minutes, s = divmod(round(seconds), 60)
    return f"{minutes} min {s} s" if minutes else f"{s} s"


def _module(path: Path):  # noqa: ANN202 - a script loaded as a module
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the default DAG (results/, committed by `dvc repro`) -----------------------------------------

def default_images() -> str:
    ev = _json("results/evaluate/metrics.json")
    cfg = _yaml("results/config/pretrain.yaml")
    name = {"simclr": "SimCLR"}.get(cfg["method"], cfg["method"])
    return (f"| frozen features | linear probe | kNN |\n|---|---|---|\n"
            f"| raw pixels | {pct(ev['pixels_linear_top1'])} | {pct(ev['pixels_knn_top1'])} |\n"
            f"| random {cfg['backbone']['name'].replace('_', ' ')} (same architecture) | "
            f"{pct(ev['random_linear_top1'])} | {pct(ev['random_knn_top1'])} |\n"
            f"| {name} (`{cfg['preset']}`, {cfg['epochs']} epochs) | {pct(ev['linear_top1'])} | "
            f"{pct(ev['knn_top1'])} |")


def default_video() -> str:
    ev = _json("results/elo_evaluate/metrics.json")
    search = _yaml("results/config/search.yaml")["search"]
    return (f"| RGB clip features (frozen) | linear probe | kNN |\n|---|---|---|\n"
            f"| random RGB network | {pct(ev['random_linear_top1'])} | {pct(ev['random_knn_top1'])} |\n"
            f"| ELo RGB network, weights from the default {search['n_trials']}-trial "
            f"{'CMA-ES' if search['sampler'] == 'cmaes' else search['sampler']} search | "
            f"{pct(ev['linear_top1'])} | {pct(ev['knn_top1'])} |")


def default_details() -> str:
    ev = _json("results/evaluate/metrics.json")
    pre = _json("results/pretrain/metrics.json")
    cfg = _yaml("results/config/pretrain.yaml")
    return (f"| features (frozen) | linear probe top-1 | kNN top-1 |\n|---|---|---|\n"
            f"| raw pixels | {pct(ev['pixels_linear_top1'])} | {pct(ev['pixels_knn_top1'])} |\n"
            f"| random {cfg['backbone']['name'].replace('_', ' ')} (same architecture) | "
            f"{pct(ev['random_linear_top1'])} | {pct(ev['random_knn_top1'])} |\n"
            f"| **{cfg['method']}, `{cfg['preset']}` preset, {cfg['epochs']} epochs** | **{pct(ev['linear_top1'])}** "
            f"| **{pct(ev['knn_top1'])}** |\n"
            f"| gain over the random backbone | **{points(ev['gain_linear'])} points** | "
            f"{points(ev['gain_knn'])} points |\n\n"
            f"Final loss {pre['loss']:.3g} after {pre['steps']} steps; collapse diagnostic (std of l2-normalised "
            f"projections) {pre['collapse_std']:.4f}, i.e. {pre['collapse_std_x_sqrt_d']:.3f}/sqrt(d) with d = "
            f"{cfg['projector']['out_dim']}: {'no collapse' if pre['collapse_std_x_sqrt_d'] > 0.5 else 'collapsing'}.")


def dag_time() -> str:
    rec = _json(RECORDS / "dag_time.json")
    stages = rec["stages"]
    image = ("check_params", "prepare_images", "baseline", "segment", "backgrounds", "pretrain", "evaluate")
    video = ("prepare_video", "extract", "search", "elo_pretrain", "elo_evaluate")
    m = rec["machine"]
    rows = "\n".join(f"| `{name}` | {seconds:.0f} |" for name, seconds in stages.items())
    total = rec["install_seconds"] + rec["repro_seconds"]
    return (f"Wall time of `{rec['command']}` on a fresh clone: **{duration(total)}**"
            f" ({duration(rec['install_seconds'])} of install with the packages already present, "
            f"{duration(rec['repro_seconds'])} of `dvc repro` for {len(stages)} stages): the image branch "
            f"{duration(sum(stages.get(s, 0) for s in image))}, the video branch "
            f"{duration(sum(stages.get(s, 0) for s in video))}. Measured on {m['cpus']} CPUs ({m['cpu']}), "
            f"{m['memory_gib']} GiB, Python {m['python']}, torch {m['torch']}, "
            f"{'a GPU' if m['gpu'] else 'no GPU'}, at commit `{rec['commit'][:7]}`.\n\n"
            f"| stage | seconds |\n|---|---|\n{rows}")


# -- the shared-budget method tables (benchmarks/records/methods*) ----------------------------------

def methods_table(folder: str) -> Callable[[], str]:
    def render() -> str:
        return _module(REPO / "benchmarks" / "methods_table.py").render(RECORDS / folder)
    return render


def background_probe() -> str:
    rows = _json(RECORDS / "background_probe.json")["rows"]
    lines = ["| frozen backbone | background linear % | background kNN % | digit linear % | digit kNN % |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['name']} | {100 * r['bg_linear']:.1f} | {100 * r['bg_knn']:.1f} | {100 * r['digit_linear']:.1f} "
              f"| {100 * r['digit_knn']:.1f} |" for r in rows]
    return "\n".join(lines)


def dino_probe() -> str:
    earlier, now = (_json(RECORDS / "dino_probe" / f"{name}.json") for name in ("earlier", "now"))
    keys = ("loss", "H(P_t)", "H(mean P_t)", "same", "other", "std_x_sqrt_d")
    head = ["loss", "H(P_t)", "H(mean P_t)", "same", "other", "std x sqrt(d)"]
    lines = ["| step | " + " | ".join(f"earlier: {h}" if i == 0 else h for i, h in enumerate(head)) + " | "
             + " | ".join(f"now: {h}" if i == 0 else h for i, h in enumerate(head)) + " |",
             "|---" * (1 + 2 * len(head)) + "|"]
    for a, b in zip(earlier["rows"], now["rows"], strict=True):
        cells = [f"{a['loss']:.3f}", *(f"{a[k]:.2f}" for k in keys[1:]), f"{b['loss']:.3f}",
                 *(f"{b[k]:.2f}" for k in keys[1:])]
        lines.append(f"| {a['step']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bench_step() -> str:
    rec = _json(RECORDS / "bench_step.json")
    rates = rec["images_per_s"]
    return (f"`{rec['method']}`, batch {rec['batch_size']}, {rec['view_size']}-pixel views, {rec['steps']} steps per "
            f"round, {rec['rounds']} rounds, {rec['threads']} threads, torch {rec['torch']}:\n\n"
            f"| loop | median ms/step |\n|---|---|\n"
            f"| bare PyTorch | {rec['bare_ms_per_step']:.1f} |\n"
            f"| selfsup `Trainer.fit` | {rec['framework_ms_per_step']:.1f} |\n"
            f"| **framework / bare** | **{rec['ratio']:.3f} ({100 * (rec['ratio'] - 1):+.1f}%)** |\n\n"
            f"Augmentation against the model's consumption (images per second, two views per image):\n\n"
            f"| producer / consumer | images/s |\n|---|---|\n"
            f"| `batched` views (kornia, whole batch at once) | {rates['views_batched']:,.0f} |\n"
            f"| `per_sample` views (torchvision v2, image by image) | {rates['views_per_sample']:,.0f} |\n"
            f"| model forward + backward (consumes) | {rates['model_fwd_bwd']:,.0f} |\n\n"
            f"The batched backend is {rates['views_batched'] / rates['views_per_sample']:.1f}x faster than the "
            f"per-sample loop, which {'could not' if rates['views_per_sample'] < rates['model_fwd_bwd'] else 'could'} "
            f"feed the model on its own.")


def extract_throughput() -> str:
    rec = _json(RECORDS / "extract_throughput.json")
    return (f"{rec['clips']} clips of {rec['frames']} frames at {rec['size']} pixels, audio at {rec['sample_rate']} Hz "
            f"into {rec['n_mels']} mel bands; {rec['machine']}.\n\n"
            f"| step | throughput |\n|---|---|\n"
            f"| decode video (ffmpeg), 1 process at a time | {rec['decode_frames_per_s']:,.0f} frames/s |\n"
            f"| decode video, {rec['workers']} processes at a time (the stage) | "
            f"{rec['decode_parallel_frames_per_s']:,.0f} frames/s |\n"
            f"| optical flow, Farneback | {rec['flow_farneback_pairs_per_s']:,.0f} frame pairs/s |\n"
            f"| optical flow, DIS | {rec['flow_dis_pairs_per_s']:,.0f} frame pairs/s |\n"
            f"| audio: ffmpeg decode + log-mel | {rec['audio_clips_per_s']:,.0f} clips/s |\n"
            f"| log-mel alone (torch.stft) | {rec['logmel_clips_per_s']:,.0f} clips/s |")


def figure_table(name: str, root: str = "results/paper/figures") -> Callable[[], str]:
    """A table the figures stage wrote (``<root>/<name>.md``), as it is."""
    def render() -> str:
        return _text(Path(root) / f"{name}.md")
    return render


def remote_roundtrip() -> str:
    return "```\n" + _text(RECORDS / "remote_roundtrip.txt") + "\n```"


RENDERERS: dict[str, Callable[[], str]] = {
    "default-images": default_images,
    "default-video": default_video,
    "default-details": default_details,
    "dag-time": dag_time,
    "methods-table": methods_table("methods"),
    "methods-table-plain": methods_table("methods-plain"),
    "methods-table-white": methods_table("methods-white"),
    "methods-table-black": methods_table("methods-black"),
    "background-probe": background_probe,
    "dino-probe": dino_probe,
    "bench-step": bench_step,
    "extract-throughput": extract_throughput,
    "remote-roundtrip": remote_roundtrip,
    "paper-methods": figure_table("method_comparison"),
    "paper-barlow": figure_table("barlow_lambda"),
    "paper-simsiam": figure_table("simsiam_stop_gradient"),
    "paper-background": figure_table("background_ablation"),
    "paper-elo": figure_table("elo_distillation"),
    "paper-search": figure_table("search_progress"),
}


def regenerate(text: str, renderers: dict[str, Callable[[], str]] = RENDERERS) -> tuple[str, list[str]]:
    """``text`` with every generated block rendered anew, and the names of the blocks that changed."""
    changed: list[str] = []

    def replace(match: re.Match) -> str:
        name = match["name"]
        if name not in renderers:
            raise SystemExit(f"no renderer for the generated block {name!r}; known: {', '.join(renderers)}")
        body = renderers[name]().rstrip("\n") + "\n"
        if body != match["body"]:
            changed.append(name)
        return f"{match[1]}{body}{match[4]}"

    return BLOCK.sub(replace, text), changed


def outside_blocks(text: str) -> str:
    """``text`` without its generated blocks, fenced code and inline code: the typed prose."""
    text = BLOCK.sub("", text)
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--update", action="store_true", help="rewrite the generated blocks")
    mode.add_argument("--check", action="store_true", help="fail if a generated block differs from its records")
    args = parser.parse_args(argv)
    stale = []
    for name in DOCS:
        path = REPO / name
        text, changed = regenerate(path.read_text())
        stale += [f"{name}: {block}" for block in changed]
        if args.update and changed:
            path.write_text(text)
    if args.check and stale:
        print("generated blocks that differ from their records (run `python scripts/docs.py --update`):\n  "
              + "\n  ".join(stale), file=sys.stderr)
        return 1
    print(("updated: " if args.update else "up to date: ") + (", ".join(stale) if stale else "all blocks"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

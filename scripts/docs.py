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
import math
import re
import statistics
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

BACKBONES = {"small_cnn": "small CNN", "resnet18": "ResNet-18", "resnet50": "ResNet-50", "vit_tiny": "ViT-Tiny",
             "vit_small": "ViT-S"}
METHODS = {"barlow": "Barlow Twins", "byol": "BYOL", "cmc": "CMC", "cpc": "CPC", "dim": "Deep InfoMax",
           "dino": "DINO", "instdisc": "InstDisc", "invaspread": "InvaSpread", "moco": "MoCo v2", "mocov1": "MoCo v1",
           "mocov3": "MoCo v3", "simclr": "SimCLR", "simclrv2": "SimCLR v2", "simsiam": "SimSiam", "swav": "SwAV"}

def supervised_row(ev: dict, cfg: dict, bold: bool = False) -> str:
    """The table row of the supervised ceiling (the baseline stage's), or nothing for a record without it."""
    if "supervised_top1" not in ev:
        return ""
    base = _yaml("results/config/baseline.yaml")
    epochs = base["eval"]["supervised"]["epochs"] or base["epochs"]
    b = "**" if bold else ""
    return (f"\n| supervised {BACKBONES[cfg['backbone']['name']]} (same architecture, every train label, {epochs} "
            f"epochs; its own classifier {b}{pct(ev['supervised_top1'])}{b}) | {pct(ev['supervised_linear_top1'])} | "
            f"{pct(ev['supervised_knn_top1'])} |")


def default_images() -> str:
    ev = _json("results/evaluate/metrics.json")
    cfg = _yaml("results/config/pretrain.yaml")
    name = METHODS.get(cfg["method"], cfg["method"])
    return (f"| frozen features | linear probe | kNN |\n|---|---|---|\n"
            f"| raw pixels | {pct(ev['pixels_linear_top1'])} | {pct(ev['pixels_knn_top1'])} |\n"
            f"| random {BACKBONES[cfg['backbone']['name']]} (same architecture) | "
            f"{pct(ev['random_linear_top1'])} | {pct(ev['random_knn_top1'])} |\n"
            f"| {name} (`{cfg['preset']}`, {cfg['epochs']} epochs) | {pct(ev['linear_top1'])} | "
            f"{pct(ev['knn_top1'])} |" + supervised_row(ev, cfg))


def default_fewlabel() -> str:
    ft = _json("results/finetune/metrics.json")
    cfg = _yaml("results/config/pretrain.yaml")
    name = METHODS.get(cfg["method"], cfg["method"])

    def cell(arm: str) -> str:
        return f"{pct(ft[f'{arm}_top1'])} ± {pct(ft[f'{arm}_top1_stderr'])}"

    return (f"| {ft['labels']} labels ({100 * ft['label_fraction']:g}% of the train split), "
            f"{ft['steps']} steps | test top-1 ± standard error |\n|---|---|\n"
            f"| {BACKBONES[cfg['backbone']['name']]} from scratch | {cell('scratch')} |\n"
            f"| {name} pretrained, fine-tuned end to end | {cell('finetuned')} |")


def default_video() -> str:
    ev = _json("results/elo_evaluate/metrics.json")
    search = _yaml("results/config/search.yaml")["search"]
    return (f"| RGB clip features (frozen) | linear probe | kNN |\n|---|---|---|\n"
            f"| random RGB network | {pct(ev['random_linear_top1'])} | {pct(ev['random_knn_top1'])} |\n"
            f"| ELo RGB network, weights from the default {search['n_trials']}-trial "
            f"{'CMA-ES' if search['sampler'] == 'cmaes' else search['sampler']} search | "
            f"{pct(ev['linear_top1'])} | {pct(ev['knn_top1'])} |")


def runs_sample() -> str:
    """`selfsup runs` on the committed records: its header and the `main` row."""
    from selfsup.experiments import HEADLINE, table

    shown = [{"rev": "0000000", "name": "main",
              "data": {"metrics": {HEADLINE: {"data": _json(HEADLINE)}}, "params": {}}}]
    return "```\n" + table(shown) + "```"


def default_details() -> str:
    ev = _json("results/evaluate/metrics.json")
    pre = _json("results/pretrain/metrics.json")
    cfg = _yaml("results/config/pretrain.yaml")
    return (f"| features (frozen) | linear probe top-1 | kNN top-1 |\n|---|---|---|\n"
            f"| raw pixels | {pct(ev['pixels_linear_top1'])} | {pct(ev['pixels_knn_top1'])} |\n"
            f"| random {BACKBONES[cfg['backbone']['name']]} (same architecture) | "
            f"{pct(ev['random_linear_top1'])} | {pct(ev['random_knn_top1'])} |\n"
            f"| **{METHODS.get(cfg['method'], cfg['method'])}, `{cfg['preset']}` preset, {cfg['epochs']} epochs** | "
            f"**{pct(ev['linear_top1'])}** "
            f"| **{pct(ev['knn_top1'])}** |\n"
            f"| gain over the random backbone | **{points(ev['gain_linear'])} points** | "
            f"{points(ev['gain_knn'])} points |" + supervised_row(ev, cfg, bold=True) + "\n\n"
            + (f"The linear probe recovers {pct(ev['linear_fraction_of_supervised'])} of the supervised model's "
               f"top-1. " if "linear_fraction_of_supervised" in ev else "") + _full_budget_ceiling(ev, cfg)
            + f"Final loss {pre['loss']:.3g} after {pre['steps']} steps; collapse diagnostic (std of l2-normalised "
            f"projections) {pre['collapse_std']:.4f}, i.e. {pre['collapse_std_x_sqrt_d']:.3f}/sqrt(d) with d = "
            f"{cfg['projector']['out_dim']}: {'no collapse' if pre['collapse_std_x_sqrt_d'] > 0.5 else 'collapsing'}.")


def _full_budget_ceiling(ev: dict, cfg: dict) -> str:
    """Where the baseline's supervised run is shorter than the pretraining: the supervised record at the
    pretraining's budget (``ratio-levers``), and the linear probe's fraction of it."""
    epochs = _yaml("results/config/baseline.yaml")["eval"]["supervised"]["epochs"]
    if "supervised_top1" not in ev or epochs in (None, cfg["epochs"]):
        return ""
    for path in sorted((RECORDS / RATIO_LEVERS).glob("*/supervised.json")):
        sup = json.loads(path.read_text())
        if _same_supervised_run(sup["config"], cfg):
            return (f"The supervised model trains for {epochs} of the pretraining's {cfg['epochs']} epochs, to keep "
                    f"the DAG short; at all {cfg['epochs']} it reaches {pct(sup['classifier_top1'])} "
                    f"(`benchmarks/records/{RATIO_LEVERS}/{path.parent.name}/supervised.json`), of which the linear "
                    f"probe recovers {pct(_fraction(ev, sup))}. ")
    return ""


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
            f"| selfsup `Loop.fit` | {rec['framework_ms_per_step']:.1f} |\n"
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


def machine() -> str:
    m = _json(RECORDS / "dag_time.json")["machine"]
    return (f"Machine for every figure below unless stated: {m['cpus']} CPU cores ({m['cpu']}), {m['memory_gib']} GiB "
            f"RAM, {'a GPU' if m['gpu'] else 'no GPU'}, Python {m['python']}, torch {m['torch']}.")


def _methods(folder: str) -> dict[str, dict]:
    """The method records of a methods-table folder (its ``supervised.json`` row is not a method)."""
    return {p.stem: json.loads(p.read_text()) for p in sorted((RECORDS / folder).glob("*.json"))
            if p.stem != "supervised"}


def _gains(rows: dict[str, dict], key: str = "gain_linear") -> str:
    return ", ".join(f"{name} {points(r[key])}" for name, r in sorted(rows.items(), key=lambda kv: -kv[1][key]))


WIDE = 0.15  # "a wide margin": this many points linear over the same extractor randomly initialised


def methods_summary() -> str:
    bg = _methods("methods")
    wide = {k: r for k, r in bg.items() if r["gain_linear"] >= WIDE}
    rest = {k: r for k, r in bg.items() if r["gain_linear"] < WIDE}
    knn_below = sorted(k for k, r in rest.items() if r["gain_knn"] <= 0)
    low, high = (f(r["gain_linear"] for r in rest.values()) for f in (min, max))
    return (f"At this budget {len(wide)} of the {len(bg)} methods beat their random extractor by "
            f"{100 * WIDE:.0f} points or more linear ({_gains(wide)}). The other {len(rest)} gain "
            f"{points(low)} to {points(high)} ({_gains(rest)}), and {len(knn_below)} of them "
            f"({', '.join(knn_below)}) are at or below it in kNN.")


def plain_summary() -> str:
    bg, plain = _methods("methods"), _methods("methods-plain")
    wide = {k: r for k, r in plain.items() if r["gain_linear"] >= WIDE}
    weak = {k for k, r in bg.items() if r["gain_linear"] < WIDE and k in plain}
    rescued = {k: plain[k] for k in sorted(weak) if k in wide}
    not_learning = sorted(set(plain) - set(wide))
    knn_random = statistics.median(r["random_knn_top1"] for r in plain.values())
    knn_beat = {k: r for k, r in plain.items() if r["gain_knn"] > 0}
    return (f"On plain digits {len(wide)} of the {len(plain)} methods beat their random extractor by "
            f"{100 * WIDE:.0f} points or more linear, among them {len(rescued)} of the {len(weak)} that do not on "
            f"digits-bg ({_gains(rescued)}). Below that bar on plain digits: {', '.join(not_learning) or 'none'}. "
            f"kNN is a harder bar here: a random small CNN already puts {pct(knn_random)} (median over the rows) of "
            f"plain digits next to their own class, and {len(knn_beat)} methods beat it "
            f"({_gains(knn_beat, 'gain_knn')}).")


def nuisance_summary() -> str:
    white, black = _methods("methods-white"), _methods("methods-black")
    return (f"Coloured digits on black: {_gains(black)} points linear. White digits on the photographs: "
            f"{_gains(white)}.")


def background_summary() -> str:
    rows = {r["name"]: r for r in _json(RECORDS / "background_probe.json")["rows"]}
    random = next(r for name, r in rows.items() if name.startswith("random"))
    methods = _methods("methods")
    trained = {k: r for k, r in rows.items() if k in methods}
    wide = [k for k in trained if methods[k]["gain_linear"] >= WIDE]
    weak = [k for k in trained if methods[k]["gain_linear"] < WIDE]

    def span(names: list[str], key: str) -> str:
        values = [trained[k][key] for k in names]
        return f"{pct(min(values))} to {pct(max(values))}"

    from selfsup.config.image import DigitsBgConfig

    crops = DigitsBgConfig().background_pool  # the probe's classes: the crops of the default digits-bg
    return (f"A random CNN already tells the background crops apart ({pct(random['bg_linear'])} linear, chance "
            f"{pct(1 / crops)}). The methods that learn the digit keep the background as well "
            f"({span(wide, 'bg_linear')}) as those that do not ({span(weak, 'bg_linear')}); what differs is the digit: "
            f"{span(wide, 'digit_linear')} against {span(weak, 'digit_linear')} "
            f"(random {pct(random['digit_linear'])}).")


FIX_TABLES = {"methods": "digits-bg", "methods-plain": "plain digits"}


def _side_by_side(column: str, sides: tuple[str, str], pairs: list[tuple[str, str, dict, dict]]) -> str:
    """A table of (method, ``column`` value, row on the first side, row on the second) pairs: linear accuracy
    and the gains over the random extractor, linear and kNN, each side by side."""
    a, b = sides
    lines = [f"| method | {column} | linear % {a} | {b} | gain linear {a} | {b} | gain kNN {a} | {b} |",
             "|---|---|---|---|---|---|---|---|"]
    for name, value, x, y in pairs:
        lines.append(f"| {name} | {value} | {100 * x['linear_top1']:.1f} | {100 * y['linear_top1']:.1f} "
                     f"| {points(x['gain_linear'])} | {points(y['gain_linear'])} "
                     f"| {points(x['gain_knn'])} | {points(y['gain_knn'])} |")
    return "\n".join(lines)


def recipe_fixes() -> str:
    """Each rerun method's shared-budget row before the recipe and loss fixes and after, side by side."""
    pairs = [(name, label, old, _methods(f"recipe-fixes-after/{folder}")[name])
             for folder, label in FIX_TABLES.items() for name, old in _methods(f"recipe-fixes-before/{folder}").items()]
    return _side_by_side("data", ("before", "after"), pairs)


def _paper_default_kept_out(method: str, folder: str, what: str, knob: tuple[str, ...], paper_value: object) -> str:
    """One method at the shared budget with a paper default the preset overrides, against the preset's row."""
    paper, preset = _methods(folder)[method], _methods("methods")[method]

    def value(row: dict) -> object:
        v = row["config"]
        for k in knob:
            v = v[k]
        return v

    assert value(paper) == paper_value != value(preset), (method, value(paper), value(preset))
    return (f"With {what}, {method} reaches {pct(paper['linear_top1'])} linear and {pct(paper['knn_top1'])} kNN at "
            f"this budget, against {pct(preset['linear_top1'])} and {pct(preset['knn_top1'])} with the preset's "
            f"`{'.'.join(knob)}: {str(value(preset)).lower()}`.")


def paper_defaults_kept_out() -> str:
    """The paper defaults the ``digits-cpu`` preset overrides because they lost accuracy at this budget."""
    return " ".join([
        _paper_default_kept_out("simclr", "simclr-paper-head", "the paper's projector, which ends in BatchNorm",
                                ("projector", "last_bn"), True),
        _paper_default_kept_out("dino", "dino-paper-last-layer", "the official advice for small models, a last "
                                "layer that is not weight-normalised", ("norm_last_layer",), False),
    ])


def _agree(a: dict, b: dict, skip: tuple[str, ...] = ("train", "bias_norm_lr_ratio")) -> bool:
    """Whether two run configs agree on every setting both records hold (records written before a knob
    existed lack it), apart from ``skip`` (the process set-up, and the rate ratio under test)."""
    for key in a.keys() & b.keys():
        if key in skip:
            continue
        x, y = a[key], b[key]
        if isinstance(x, dict) and isinstance(y, dict):
            if not _agree(x, y, skip):
                return False
        elif x != y:
            return False
    return True


def _full_rate_row(row: dict) -> dict:
    """The shared-budget record of ``row``'s method and settings with biases and norms at the full rate."""
    for folder in ("methods", "dino-paper-last-layer", "simclr-paper-head", "recipe-fixes-after/methods"):
        found = _methods(folder).get(row["method"])
        if found is not None and found["config"]["optim"].get("bias_norm_lr_ratio", 1.0) == 1.0 \
                and _agree(found["config"], row["config"]):
            return found
    raise ValueError(f"no full-rate record with the settings of the bias-lr-ratio run of {row['method']}")


def bias_lr_ratio() -> str:
    """The shared-budget rows with biases and norms at ``optim.bias_norm_lr_ratio`` of the rate, next to the
    same configuration's row at the full rate."""
    pairs = [(name, str(r["config"]["optim"]["bias_norm_lr_ratio"]), _full_rate_row(r), r)
             for name, r in _methods("bias-lr-ratio").items()]
    return _side_by_side("ratio", ("full rate", "at the ratio"), pairs)


RATIO_LEVERS = "ratio-levers"
SUPERVISED_KNOBS = ("seed", "epochs", "batch_size", "backbone", "views", "dataset", "data")  # what its run reads


def _same_supervised_run(a: dict, b: dict) -> bool:
    """Whether two run configs give the same supervised run: they agree on every knob it reads that both hold."""
    return _agree({k: a[k] for k in SUPERVISED_KNOBS if k in a}, {k: b[k] for k in SUPERVISED_KNOBS if k in b}, skip=())


def _fraction(row: dict, sup: dict) -> float:
    """A run's linear probe over the supervised model's own top-1."""
    return row["linear_top1"] / sup["classifier_top1"]


def _supervised_for(row: dict, folder: str) -> dict:
    """The supervised record beside ``row`` (its folder's, else the shared-budget table's) run with the same
    architecture, views and budget, so that the fraction compares like with like."""
    for candidate in (RECORDS / folder / "supervised.json", RECORDS / "methods" / "supervised.json"):
        if candidate.is_file():
            sup = json.loads(candidate.read_text())
            if _same_supervised_run(sup["config"], row["config"]):
                return sup
    raise SystemExit(f"no supervised record with the backbone, views and budget of {folder}/{row['method']}.json; "
                     f"rerun it with benchmarks/methods_table.py --supervised --out benchmarks/records/{folder}")


def _lever_rows() -> list[tuple[str, dict, dict]]:
    """(what changed from the preset, SimCLR's row, its supervised row): the preset's first, then each lever
    of ``benchmarks/records/ratio-levers/``."""
    base = _methods("methods")["simclr"]
    rows = [("the preset", base, _supervised_for(base, "methods"))]
    for folder in sorted((RECORDS / RATIO_LEVERS).iterdir()):
        row = _methods(f"{RATIO_LEVERS}/{folder.name}")["simclr"]
        flat, ref = _flat(row["config"]), _flat(base["config"])
        changed = ", ".join(f"`{k}` {ref[k]} → {v}" for k, v in sorted(flat.items()) if k in ref and ref[k] != v)
        rows.append((changed or folder.name, row, _supervised_for(row, f"{RATIO_LEVERS}/{folder.name}")))
    return rows


def ratio_levers() -> str:
    """SimCLR's linear probe as a fraction of the supervised top-1 at the shared budget, for the preset and for
    each lever changed alone (``benchmarks/records/ratio-levers/<lever>/``), each against a supervised run
    of its own architecture, views and budget."""
    lines = ["| change from the preset | SimCLR linear % | kNN % | supervised top-1 % | linear / supervised "
             "| SimCLR pretrain s | supervised run s |", "|---|---|---|---|---|---|---|"]
    for label, row, sup in _lever_rows():
        lines.append(f"| {label} | {100 * row['linear_top1']:.1f} | {100 * row['knn_top1']:.1f} "
                     f"| {100 * sup['classifier_top1']:.1f} | {_fraction(row, sup):.3f} "
                     f"| {row['pretrain_seconds']:.0f} | {sup['seconds']:.0f} |")
    return "\n".join(lines)


def ratio_levers_summary() -> str:
    """Each lever's change of the ratio and of SimCLR's linear accuracy, largest ratio first."""
    (_, base, base_sup), *levers = _lever_rows()
    ratio = _fraction(base, base_sup)

    def moved(label: str, row: dict, sup: dict) -> tuple[float, str]:
        r = _fraction(row, sup)
        return r, (f"{label}: ratio {r:.3f} ({r - ratio:+.3f}), "
                   f"SimCLR {points(row['linear_top1'] - base['linear_top1'])} points, "
                   f"supervised {points(sup['classifier_top1'] - base_sup['classifier_top1'])} points, "
                   f"pretraining {row['pretrain_seconds'] / base['pretrain_seconds']:.1f}x the preset's time")

    ranked = sorted((moved(*lever) for lever in levers), key=lambda m: -m[0])
    plain = _methods("methods-plain")["simclr"]
    plain_sup = _supervised_for(plain, "methods-plain")
    return (f"At the shared budget the preset's SimCLR recovers {ratio:.3f} of the supervised top-1. One lever at a "
            f"time, largest ratio first:\n\n" + "\n".join(f"- {text}" for _, text in ranked)
            + f"\n\nOn plain digits (the nuisance control above) the same run recovers "
            f"{_fraction(plain, plain_sup):.3f} of its supervised top-1 "
            f"({pct(plain['linear_top1'])} against {pct(plain_sup['classifier_top1'])}).")


RECIPE_SEARCH = Path("benchmarks/records/recipe-search")


def _recipe_studies() -> list[tuple[str, dict, list[dict], dict, dict]]:
    """(method, best params, completed trials, preset row, found-recipe row) of every verified study, in the
    order of ``benchmarks/recipe_spaces.yaml``."""
    spaces = _yaml("benchmarks/recipe_spaces.yaml")
    out = []
    for method in spaces:
        folder = RECIPE_SEARCH / method
        if not (folder / "verified.json").is_file():
            continue
        with (REPO / folder / "trials.csv").open() as f:
            trials = [r for r in csv.DictReader(f) if r["state"] == "COMPLETE"]
        found = _json(folder / "verified.json")
        out.append((method, found["recipe"], trials, _json(RECIPE_SEARCH / "before" / f"{method}.json"), found))
    return out


def _flat(params: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in params.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def _project(values: object, like: object) -> object:
    """``values`` restricted to the keys ``like`` has, recursively."""
    if isinstance(like, dict) and isinstance(values, dict):
        return {k: _project(values.get(k), v) for k, v in like.items()}
    return values


def _adopted(method: str, found: dict) -> bool:
    """Whether the preset now takes the found recipe: then the shared-budget table's row must be that run."""
    from selfsup.params import load_config

    cfg = load_config(REPO / "params.yaml", {"method": method, "epochs": found["epochs"]}).to_dict()
    if _project(cfg, found["config"]) != found["config"]:  # knobs added to the schema since are not the recipe
        return False
    row = _methods("methods")[method]
    if any(row[k] != found[k] for k in ("linear_top1", "knn_top1", "gain_linear", "gain_knn")):
        raise SystemExit(f"the preset takes {method}'s searched recipe but benchmarks/records/methods/{method}.json "
                         f"is not its verified run; copy verified.json there or rerun the methods table")
    return True


def recipe_search() -> str:
    """Each searched method: the best trial's params, its fitness and kNN, and the 40-epoch rows of the
    preset's recipe and of the found one, side by side; whether the preset took the found recipe."""
    lines = ["| method | best trial's params | trial (of) | Zipf-KL | its kNN % | best kNN % of the study "
             "| linear % preset | found | gain linear preset | found | gain kNN preset | found | in the preset |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for method, recipe, trials, before, found in _recipe_studies():
        best = min(trials, key=lambda r: (float(r["zipf_kl"]), int(r["trial"])))
        params = ", ".join(f"`{k}` {v:.3g}" for k, v in sorted(_flat(recipe).items()))
        top_knn = max(float(r["knn_top1"]) for r in trials)
        lines.append(f"| {method} | {params} | {best['trial']} ({len(trials)}) | {float(best['zipf_kl']):.4f} "
                     f"| {100 * float(best['knn_top1']):.1f} | {100 * top_knn:.1f} "
                     f"| {100 * before['linear_top1']:.1f} | {100 * found['linear_top1']:.1f} "
                     f"| {points(before['gain_linear'])} | {points(found['gain_linear'])} "
                     f"| {points(before['gain_knn'])} | {points(found['gain_knn'])} "
                     f"| {'yes' if _adopted(method, found) else 'no'} |")
    return "\n".join(lines)


def recipe_search_summary() -> str:
    from scipy.stats import spearmanr

    studies = _recipe_studies()
    if not studies:
        return "No search has been verified at the shared budget yet."
    rows = [r for _, _, trials, _, _ in studies for r in trials]
    rho = float(spearmanr([float(r["zipf_kl"]) for r in rows], [float(r["knn_top1"]) for r in rows]).statistic)
    within = [float(spearmanr([float(r["zipf_kl"]) for r in t], [float(r["knn_top1"]) for r in t]).statistic)
              for _, _, t, _, _ in studies]
    picked_top = sum(min(t, key=lambda r: float(r["zipf_kl"]))["knn_top1"] == max(t, key=lambda r: float(
        r["knn_top1"]))["knn_top1"] for _, _, t, _, _ in studies)
    better = [m for m, _, _, b, f in studies if f["linear_top1"] > b["linear_top1"]]
    reach = [m for m, _, _, _, f in studies if f["gain_linear"] >= 0.15]
    epochs = {f["epochs"] for *_, f in studies}
    return (f"Over the {len(rows)} trials of the {len(studies)} studies Spearman's rho between Zipf-KL and the "
            f"trial's kNN accuracy is {rho:+.2f} (within a study: median {statistics.median(within):+.2f}, from "
            f"{min(within):+.2f} to {max(within):+.2f}); the trial with the lowest Zipf-KL is also the study's "
            f"best by kNN in {picked_top} of {len(studies)}. At {', '.join(map(str, sorted(epochs)))} epochs the found "
            f"recipe beats the preset's on linear accuracy for {len(better)} of {len(studies)} methods"
            + (f" ({', '.join(better)})" if better else "")
            + f"; {len(reach)} reach a gain of +15 points over the random extractor"
            + (f" ({', '.join(reach)})." if reach else "."))


def paper_reproduces() -> str:
    folder = REPO / "results/paper/runs"
    rows = _methods("methods")
    runs = {name: _json(folder / name / "evaluate" / "metrics.json") for name in rows
            if (folder / name / "evaluate" / "metrics.json").is_file()}
    same = [k for k in runs if f"{100 * rows[k]['linear_top1']:.1f}" == f"{100 * runs[k]['linear_top1']:.1f}"
            and f"{100 * rows[k]['knn_top1']:.1f}" == f"{100 * runs[k]['knn_top1']:.1f}"]
    differ, missing = sorted(set(runs) - set(same)), sorted(set(rows) - set(runs))
    return (f"The pipeline's runs reproduce the shared-budget table above to the printed digit for {len(same)} of "
            f"the {len(runs)} methods it has run" + (f" (not: {', '.join(differ)})" if differ else "")
            + (f"; not yet run in the pipeline: {', '.join(missing)}." if missing else "."))


def _run(name: str) -> tuple[dict, dict]:
    root = Path("results/paper/runs") / name
    return _json(root / "pretrain" / "metrics.json"), _json(root / "evaluate" / "metrics.json")


def barlow_summary() -> str:
    runs = {}
    for path in sorted((REPO / "results/paper/runs").glob("barlow*/pretrain/config.yaml")):
        runs[yaml.safe_load(path.read_text())["lambda"]] = path.parent.parent.name
    scored = {lam: _run(name) for lam, name in runs.items()}
    best = max(scored, key=lambda lam: scored[lam][1]["linear_top1"])
    tenfold = min((lam for lam in scored if lam > best), default=None)
    text = f"Here the best of the {len(scored)} values is {best:g} ({pct(scored[best][1]['linear_top1'])} linear)."
    if tenfold is not None:
        train, ev = scored[tenfold]
        drop = 100 * (scored[best][1]["linear_top1"] - ev["linear_top1"])
        text += (f" At {tenfold:g} the linear probe drops by {drop:.1f} points ({pct(ev['linear_top1'])}, against "
                 f"{pct(ev['random_linear_top1'])} for the random extractor)"
                 f" and the collapse diagnostic from {scored[best][0]['collapse_std_x_sqrt_d']:.2f} to "
                 f"{train['collapse_std_x_sqrt_d']:.2f}.")
    return text


def simsiam_summary() -> str:
    (with_sg, ev_sg), (without, ev_no) = _run("simsiam"), _run("simsiam-no_stop_gradient")
    return (f"Without the stop-gradient the loss ends at {without['loss']:.3f} (its trivial minimum is -1: every "
            f"pair of views mapped to the same direction), the collapse diagnostic at "
            f"{without['collapse_std_x_sqrt_d']:.2f} (x sqrt(d); about 1 when healthy), and the frozen features score "
            f"{pct(ev_no['linear_top1'])} linear against {pct(ev_no['random_linear_top1'])} for the random extractor. "
            f"With it: loss {with_sg['loss']:.3f}, "
            f"diagnostic {with_sg['collapse_std_x_sqrt_d']:.2f}, {pct(ev_sg['linear_top1'])} linear.")


def background_ablation_summary() -> str:
    lines = []
    for method in ("byol", "moco", "swav"):
        base = _run(method)[1]["linear_top1"]
        deltas = [_run(f"{method}-bg_{m}")[1]["linear_top1"] - base for m in ("estimated", "ground_truth")]
        lines.append(f"{method} {points(deltas[0])} (estimated masks) and {points(deltas[1])} (ground-truth masks)")
    return ("Change in linear accuracy against the same method without background augmentation: "
            + "; ".join(lines) + ".")


def search_summary() -> str:
    from selfsup.figures.search import best_so_far, read_studies, zipf_vs_accuracy

    studies = read_studies(REPO / "results/paper/search")
    finals = {key: best_so_far(rows)[-1] for key, rows in studies.items()}
    seeds = sorted({seed for _, seed in studies})
    mean = {s: statistics.mean(finals[s, seed] for seed in seeds) for s in ("cmaes", "random")}
    wins = sum(finals["cmaes", seed] < finals["random", seed] for seed in seeds)
    _, acc, rho = zipf_vs_accuracy(studies)
    chance = {float(r["chance_top1"]) for rows in studies.values() for r in rows}
    if len(chance) != 1:
        raise SystemExit(f"results/paper/search trials disagree on chance_top1 ({sorted(chance)}); rerun the search")
    trials = min(len(rows) for rows in studies.values())
    relative = 100 * (mean["random"] - mean["cmaes"]) / mean["random"]
    spread, gap = max(finals.values()) - min(finals.values()), abs(mean["random"] - mean["cmaes"])
    spread_vs_gap = ("larger than the gap between the samplers' means, so this small sample does not separate "
                     "them firmly" if spread > gap else "smaller than the gap between the samplers' means")
    return (f"After {trials} trials CMA-ES ends lower than random search for {wins} of the {len(seeds)} seeds; the "
            f"mean best Zipf-KL is {mean['cmaes']:.4f} for CMA-ES and {mean['random']:.4f} for random search "
            f"({relative:+.0f}% relative to random). The per-seed spread ({min(finals.values()):.4f} to "
            f"{max(finals.values()):.4f}) is {spread_vs_gap}. Over all {len(acc)} trials Spearman's rho between "
            f"Zipf-KL and kNN accuracy is {rho:+.2f}; every trial's kNN accuracy lies between {pct(acc.min())} and "
            f"{pct(acc.max())} (chance {pct(chance.pop())}).")


def elo_summary() -> str:
    runs = {v: _json(Path("results/paper/elo") / v / "evaluate" / "metrics.json")
            for v in ("rgb_only", "distill", "full")}
    random = runs["full"]
    best = min(runs, key=lambda v: runs[v]["zipf_kl"])
    return (f"Linear / kNN on the test clips: random initialisation {pct(random['random_linear_top1'])} / "
            f"{pct(random['random_knn_top1'])}; RGB tasks only {pct(runs['rgb_only']['linear_top1'])} / "
            f"{pct(runs['rgb_only']['knn_top1'])}; with flow and audio distilled "
            f"{pct(runs['distill']['linear_top1'])} / {pct(runs['distill']['knn_top1'])}; the default weights "
            f"{pct(runs['full']['linear_top1'])} / "
            f"{pct(runs['full']['knn_top1'])} (chance {pct(random['chance_top1'])}). "
            f"The lowest Zipf-KL is the `{best}` variant's "
            f"({runs[best]['zipf_kl']:.3f}).")


def figure_table(name: str, root: str = "results/paper/figures") -> Callable[[], str]:
    """A table the figures stage wrote (``<root>/<name>.md``), as it is."""
    def render() -> str:
        return _text(Path(root) / f"{name}.md")
    return render


FEWLABEL = REPO / "results/paper/fewlabel"
FEWLABEL_STAGES = ("finetune", "distill_self", "distill_small", "selftrain", "selftrain_random", "selftrain_ssl")


def fewlabel_fractions() -> str:
    """The label-fraction grid of the paper pipeline (test top-1 ± standard error per arm)."""
    from selfsup.figures.fewlabel import fraction_rows, read_fraction_grid
    from selfsup.figures.render import markdown_table

    return markdown_table(*fraction_rows(read_fraction_grid(FEWLABEL)))


def fewlabel_augmentation() -> str:
    """The augmentation-strength grid of the paper pipeline, with the gains of pretraining and self-training."""
    from selfsup.figures.fewlabel import augment_rows, read_augment_grid
    from selfsup.figures.render import markdown_table

    return markdown_table(*augment_rows(read_augment_grid(FEWLABEL)))


def fewlabel_cost() -> str:
    """Per few-label run and stage: the arms' training wall time (summed over the stage's arms) and the
    stage process's peak resident memory."""
    from selfsup.figures.render import markdown_table

    rows = []
    for folder in sorted(p for p in FEWLABEL.iterdir() if p.is_dir()):
        cells = []
        for stage in FEWLABEL_STAGES:
            path = folder / stage / "metrics.json"
            if not path.is_file():
                cells.append("")
                continue
            m = _json(path)
            seconds = sum(v for k, v in m.items() if k.endswith("_seconds"))
            cells.append(f"{seconds:.0f} s, {m['peak_rss_mib']:.0f} MiB")
        rows.append([folder.name, *cells])
    used = [i for i in range(len(FEWLABEL_STAGES)) if any(row[1 + i] for row in rows)]
    return markdown_table(["run", *(FEWLABEL_STAGES[i] for i in used)], [[r[0], *(r[1 + i] for i in used)]
                                                                         for r in rows])


def _difference(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    """``a - b`` and the standard error of the difference of two independent test-split accuracies."""
    return a[0] - b[0], (a[1] ** 2 + b[1] ** 2) ** 0.5


def fewlabel_summary() -> str:
    """What the label-fraction grid says about SimCLR v2's claims, in numbers with their standard errors."""
    from selfsup.figures.fewlabel import read_fraction_grid

    grid = read_fraction_grid(FEWLABEL)
    scratch, tuned = "supervised from scratch", "pretrain + fine-tune"
    selfd, small = "+ self-distillation", "+ distillation into a smaller student"
    st = "self-training (from-scratch teacher)"
    lines = []
    for (run, fraction), arms in sorted(grid.items()):
        if not all(a in arms for a in (scratch, tuned, selfd, small, st)):
            continue
        gain, se = _difference(arms[selfd], arms[scratch])
        verdict = "more than" if gain > 2 * se else "not more than"
        distil, distil_se = _difference(arms[selfd], arms[tuned])
        shrink, shrink_se = _difference(arms[small], arms[tuned])
        selftrain, selftrain_se = _difference(arms[st], arms[scratch])
        lines.append(
            f"- {run}, {100 * fraction:g}% labels: fine-tuned and self-distilled {pct(arms[selfd][0])} against "
            f"{pct(arms[scratch][0])} from scratch, {points(gain)} ({verdict} twice the standard error of the "
            f"difference, {100 * se:.1f}); self-distillation over fine-tuning {points(distil)} "
            f"(± {100 * distil_se:.1f}); "
            f"the smaller student against its teacher {points(shrink)} (± {100 * shrink_se:.1f}); self-training "
            f"from the from-scratch teacher over that teacher {points(selftrain)} (± {100 * selftrain_se:.1f}).")
    return "\n".join(lines)


def fewlabel_augment_summary() -> str:
    """Zoph et al.'s question on the augmentation grid: pretraining's gain and self-training's, level by level."""
    from selfsup.figures.fewlabel import read_augment_grid

    grid = read_augment_grid(FEWLABEL)
    parts = {"pretraining (SSL init over random init, supervised)": ("SSL init, supervised", "random init, supervised"),
             "self-training over random init": ("random init, self-training", "random init, supervised"),
             "self-training over SSL init": ("SSL init, self-training", "SSL init, supervised")}
    lines = []
    for what, (a, b) in parts.items():
        cells = []
        for level, arms in sorted(grid.items()):
            if a in arms and b in arms:
                gain, se = _difference(arms[a], arms[b])
                cells.append(f"{level.upper()} {points(gain)} (± {100 * se:.1f})")
        lines.append(f"- {what}: " + ", ".join(cells) + ".")
    return "\n".join(lines)


GENERATIVE = ("vae", "betavae", "vqvae")


def generative_table() -> str:
    """The generative methods' shared-budget rows: reconstruction against the mean image, the latent code's
    measures, disentanglement next to the random extractor's, and the linear probe."""
    rows = {m: r for m, r in _methods("methods").items() if m in GENERATIVE}
    lines = ["| method | recon MSE | mean-image MSE | ratio | KL nats | active units | perplexity (codes used) "
             "| beta-VAE score (random) | MIG (random) | linear % (random) | pretrain s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in GENERATIVE:
        if name not in rows:
            continue
        r, e = rows[name], rows[name]["evaluation"]
        units = f"{e['active_units']} of {r['config']['latent_dim']}" if "active_units" in e else ""
        codes = f"{e['perplexity']:.1f} ({e['codes_used']} of {r['config']['n_codes']})" if "perplexity" in e else ""
        lines.append(f"| {name} | {e['recon_mse']:.4f} | {e['mean_image_mse']:.4f} | {e['recon_mse_ratio']:.2f} | "
                     + (f"{e['kl']:.1f}" if "kl" in e else "") + f" | {units} | {codes} | "
                     f"{e['betavae_score']:.3f} ({e['random_betavae_score']:.3f}) | {e['mig']:.3f} "
                     f"({e['random_mig']:.3f}) | {pct(r['linear_top1'])} ({pct(r['random_linear_top1'])}) | "
                     f"{r['pretrain_seconds']:.0f} |")
    tops = []
    for name in (n for n in GENERATIVE if n in rows):
        gaps = {k.removeprefix("mig_"): v for k, v in rows[name]["evaluation"].items() if k.startswith("mig_")}
        ranked = sorted(gaps, key=lambda k: -gaps[k])[:2]
        tops.append(f"{name}: {ranked[0]} ({gaps[ranked[0]]:.3f}), then {ranked[1]} ({gaps[ranked[1]]:.3f})")
    return "\n".join(lines) + "\n\nThe two factors with the largest MIG gap: " + "; ".join(tops) + "."


def beta_sweep_summary() -> str:
    """The beta sweep's end points: what a larger beta bought and what it cost."""
    runs = {}
    for path in sorted((REPO / "results/paper/runs").glob("betavae*/pretrain/config.yaml")):
        cfg = yaml.safe_load(path.read_text())
        evaluation = path.parent.parent / "evaluate" / "metrics.json"
        if not cfg["capacity"] and evaluation.is_file():
            runs[cfg["beta"]] = json.loads(evaluation.read_text())
    low, high = min(runs), max(runs)
    a, b = runs[low], runs[high]
    monotone = all(runs[x]["kl"] >= runs[y]["kl"] for x, y in zip(sorted(runs), sorted(runs)[1:], strict=False))
    return (f"From beta {low:g} to {high:g} ({len(runs)} runs): reconstruction MSE {a['recon_mse']:.4f} to "
            f"{b['recon_mse']:.4f}, KL {a['kl']:.1f} to {b['kl']:.1f} nats"
            f" ({'falling at every step' if monotone else 'not monotone'}), active units {a['active_units']} to "
            f"{b['active_units']}, beta-VAE score {a['betavae_score']:.3f} to {b['betavae_score']:.3f}, MIG "
            f"{a['mig']:.3f} to {b['mig']:.3f}, linear probe {pct(a['linear_top1'])} to {pct(b['linear_top1'])}.")


TRANSLATE = REPO / "results/paper/translate"
TRANSLATE_ORDER = ("cyclegan", "cut", "fastcut", "dclgan")
# (score, direction): +1 when higher is better
TRANSLATE_SCORES = (("l1", -1, "L1"), ("ssim", 1, "SSIM"), ("content", 1, "content"))


def _translate_evals() -> dict[str, dict]:
    runs = {p.parent.parent.name: json.loads(p.read_text()) for p in sorted(TRANSLATE.glob("*/eval/metrics.json"))}
    return dict(sorted(runs.items(), key=lambda kv: (TRANSLATE_ORDER.index(kv[0]) if kv[0] in TRANSLATE_ORDER
                                                    else len(TRANSLATE_ORDER), kv[0])))


def _margin(run: dict, ref: dict, key: str, direction: int, name: str) -> str:
    """Whether the run beats the reference ``name`` on one score, in standard errors of the difference."""
    diff = direction * (run[key] - ref[key])
    se = math.sqrt(run[f"{key}_se"] ** 2 + ref[f"{key}_se"] ** 2)
    verdict = "beats" if diff > 2 * se else ("loses to" if diff < -2 * se else "ties")
    return f"{verdict} {name} ({diff / se:+.1f} SE)"


def translation_summary() -> str:
    """Per run: whether it beats the identity and the black-background references on each paired score and
    on content, by more than two standard errors of the difference."""
    lines = []
    for name, m in _translate_evals().items():
        s, refs = m["translation"], m["baselines"]
        parts = []
        for key, direction, label in TRANSLATE_SCORES:
            value = f"{100 * s[key]:.1f}%" if key == "content" else f"{s[key]:.3f}"
            parts.append(f"{label} {value} {_margin(s, refs['identity'], key, direction, 'identity')}, "
                         f"{_margin(s, refs['black_background'], key, direction, 'black background')}")
        lines.append(f"- `{name}`: " + "; ".join(parts) + ".")
    return "\n".join(lines)


def translation_cost() -> str:
    """Seconds per step and peak memory of each method, measured side by side (benchmarks/translate_cost.py)."""
    record = json.loads((RECORDS / "translate_cost.json").read_text())
    methods = record["methods"]
    base = methods["cyclegan"]["seconds_per_step"]
    lines = [f"Measured on {record['machine']}, {record['threads']} threads, {record['steps']} steps after "
             f"{record['warmup']} of warm-up, median of {len(methods['cyclegan']['rounds'])} rounds taken in turn.",
             "", "| method | s/step | vs CycleGAN | peak MiB (process) | parameters |", "|---|---|---|---|---|"]
    for name in TRANSLATE_ORDER:
        m = methods[name]
        lines.append(f"| {name} | {m['seconds_per_step']:.3f} | {m['seconds_per_step'] / base:.2f}x | "
                     f"{m['peak_rss_mib']:.0f} | {m['parameters']:,} |")
    return "\n".join(lines)


def team_storage() -> str:
    """Search throughput per storage and worker count, and MLflow logging cost (benchmarks/team_storage.py)."""
    record = json.loads((RECORDS / "team_storage.json").read_text())
    search = record["search"]
    workers = sorted({int(w) for rates in search.values() for w in rates})
    lines = [f"Measured on {record['machine']}: {record['trials']} trials per study, each sleeping "
             f"{record['trial_seconds']:g} s in place of training.", "",
             "| storage | " + " | ".join(f"{w} worker{'s' if w > 1 else ''} (trials/min)" for w in workers) + " |",
             "|---|" + "---|" * len(workers)]
    for name, rates in search.items():
        lines.append(f"| {name} | " + " | ".join(f"{rates[str(w)]:.1f}" for w in workers) + " |")
    ms = record["logging_ms"]
    lines += ["", f"MLflow: one training step's `log_metrics` takes {ms['sqlite']:.2f} ms into the sqlite default and "
              f"{ms['server']:.2f} ms into an `mlflow server` on PostgreSQL ({ms['server'] / ms['sqlite']:.2f}x), "
              f"mean of {record['steps']} calls."]
    return "\n".join(lines)


def remote_roundtrip() -> str:
    return "```\n" + _text(RECORDS / "remote_roundtrip.txt") + "\n```"


RENDERERS: dict[str, Callable[[], str]] = {
    "machine": machine,
    "methods-summary": methods_summary,
    "plain-summary": plain_summary,
    "nuisance-summary": nuisance_summary,
    "background-probe-summary": background_summary,
    "paper-reproduces": paper_reproduces,
    "recipe-fixes": recipe_fixes,
    "bias-lr-ratio": bias_lr_ratio,
    "ratio-levers": ratio_levers,
    "ratio-levers-summary": ratio_levers_summary,
    "paper-defaults-kept-out": paper_defaults_kept_out,
    "barlow-summary": barlow_summary,
    "simsiam-summary": simsiam_summary,
    "background-ablation-summary": background_ablation_summary,
    "search-summary": search_summary,
    "elo-summary": elo_summary,
    "default-images": default_images,
    "selfsup-runs": runs_sample,
    "default-fewlabel": default_fewlabel,
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
    "recipe-search": recipe_search,
    "recipe-search-summary": recipe_search_summary,
    "paper-methods": figure_table("method_comparison"),
    "paper-barlow": figure_table("barlow_lambda"),
    "paper-simsiam": figure_table("simsiam_stop_gradient"),
    "paper-background": figure_table("background_ablation"),
    "paper-elo": figure_table("elo_distillation"),
    "paper-search": figure_table("search_progress"),
    "fewlabel-fractions": fewlabel_fractions,
    "fewlabel-augmentation": fewlabel_augmentation,
    "fewlabel-cost": fewlabel_cost,
    "fewlabel-summary": fewlabel_summary,
    "fewlabel-augment-summary": fewlabel_augment_summary,
    "generative-table": generative_table,
    "paper-beta-sweep": figure_table("beta_sweep"),
    "beta-sweep-summary": beta_sweep_summary,
    "paper-vqvae-codebook": figure_table("vqvae_codebook"),
    "paper-translation": figure_table("translation"),
    "translation-summary": translation_summary,
    "translation-cost": translation_cost,
    "team-storage": team_storage,
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

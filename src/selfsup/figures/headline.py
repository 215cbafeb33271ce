"""The headline numbers of the main DAG in one small metrics file (``results/metrics.json``).

``dvc metrics show`` and ``dvc exp show`` list every key of every declared metrics file, so the DAG
declares only this one: image and video linear-probe and kNN top-1 of the frozen features, nested so
that the columns read ``image.linear_top1``, ``video.knn_top1``. The per-stage files it is taken from
stay in git as plain outputs (``dvc metrics show results/evaluate/metrics.json`` shows one).
"""

from __future__ import annotations

import json
from pathlib import Path

from selfsup.errors import DataError
from selfsup.io import write_json

KEYS = ("linear_top1", "knn_top1")


def headline(image_metrics: Path, video_metrics: Path) -> dict[str, dict[str, float]]:
    """``{"image": {...}, "video": {...}}`` from the evaluate and elo_evaluate metrics files."""
    out = {}
    for name, path in (("image", image_metrics), ("video", video_metrics)):
        try:
            metrics = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"cannot read {path} ({exc}); rerun the stage that writes it (dvc repro)") from exc
        missing = [k for k in KEYS if k not in metrics]
        if missing:
            raise DataError(f"{path} has no {', '.join(missing)}; rerun the stage that writes it (dvc repro)")
        out[name] = {k: metrics[k] for k in KEYS}
    return out


def write_headline(image_metrics: Path, video_metrics: Path, out: Path) -> Path:
    write_json(out, headline(image_metrics, video_metrics))
    return out

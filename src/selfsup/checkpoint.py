"""Training checkpoints: atomic writes, RNG states, and a fingerprint of the config they belong to.

A checkpoint holds everything needed to continue bit-for-bit: model (including method state kept
in buffers: queues, banks, centres, EMA teachers), optimiser, grad scaler, step, and the torch,
CUDA, numpy and Python RNG states. It is only resumed when its fingerprint matches the current
config and to the code (:func:`code_version`), so a changed knob or a changed method never continues
from a stale run. Loading uses ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from selfsup.errors import TrainingError
from selfsup.io import atomic_write

LAST = "last.pt"


def fingerprint(config_dict: dict) -> str:
    """Hash of the settings that change training; logging and evaluation settings excluded."""
    d = {k: v for k, v in config_dict.items() if k != "eval"}
    d["train"] = {k: v for k, v in d.get("train", {}).items() if k not in ("checkpoint_every", "log_every")}
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def code_version() -> str:
    """Hash of the ``selfsup`` package's source files. Training state written by other code is not
    resumed: a rerun after a code change trains again instead of returning the old weights."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (a crash mid-write leaves the old file intact)."""
    atomic_write(Path(path), lambda f: torch.save(state, f))


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise TrainingError(f"checkpoint {path} is unreadable ({exc}); delete it to start over") from exc

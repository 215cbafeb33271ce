"""Atomic file writes: write to a temporary sibling, flush to disk, then rename into place.

Files get the permissions any new file gets under the process's umask (usually 0644), not the
0600 of a bare temporary file, so an MLflow server or a teammate's account can read results.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from selfsup.errors import OutputError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(f)`` on a temporary file and rename it to ``path`` once it is complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def replace_folder(root: Path, fill: Callable[[Path], None]) -> None:
    """Build a folder with ``fill(tmp)`` in a temporary sibling, then swap it in for ``root``."""
    root = Path(root)
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        fill(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if root.exists():
        shutil.rmtree(root)
    tmp.rename(root)


def _probe(folder: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".write-check.")
    os.close(fd)
    os.unlink(tmp)


def check_writable(path: Path, what: str = "output") -> None:
    """Fail now, before any work, if ``path`` (a file or folder a stage will write) cannot be written.

    Probes the folder itself when it exists and the nearest existing folder above it (where a new
    folder, or the temporary sibling of an atomic write, is created); nothing is left behind.
    """
    path = Path(path)
    above = path.parent
    while not above.exists() and above != above.parent:
        above = above.parent
    targets = [path] if path.is_dir() else []
    for folder in [*targets, above]:
        if not folder.is_dir():
            raise OutputError(f"{what} {path}: {folder} is not a folder; remove it or choose another {what}")
        try:
            _probe(folder)
        except OSError as exc:
            raise OutputError(f"{what} {path}: cannot write in {folder} ({exc.strerror or exc}); make it writable "
                              f"(e.g. `chmod u+w {folder}`) or choose another {what}") from exc

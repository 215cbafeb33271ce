"""One configuration for a benchmark without touching the repository's params: a temporary folder holding a
copy of ``params/`` and a ``params.yaml`` with overrides deep-merged over the given one."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml


@contextmanager
def params_with(params: Path, overrides: dict) -> Iterator[Path]:
    """The path of the temporary ``params.yaml`` (its folder is free for the run's outputs), removed on exit."""
    from selfsup.params import deep_merge, load_params_yaml

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shutil.copytree(Path(params).parent / "params", tmp / "params")
        user = deep_merge(load_params_yaml(Path(params).read_text()), overrides)
        (tmp / "params.yaml").write_text(yaml.safe_dump(user, sort_keys=False))
        yield tmp / "params.yaml"

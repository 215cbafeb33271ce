"""The configuration schema sits below the methods and the params layering above them: no cycle.

:mod:`selfsup.config` (with its image and video sections) must never import :mod:`selfsup.methods`,
not even inside a function, since the methods import it for their type of config;
:mod:`selfsup.params` imports the methods' registry and nothing the methods import may reach it.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

SRC = REPO / "src"
SCHEMA_MODULES = ("selfsup.config", "selfsup.config.image", "selfsup.config.video")


def _file(module: str) -> Path | None:
    base = SRC / Path(*module.split("."))
    return next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)


def _imported(path: Path) -> set[str]:
    """`selfsup` modules ``path`` imports anywhere in its body, with the packages above them."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            found.update(p for i in range(1, len(parts) + 1)
                         if (p := ".".join(parts[:i])).startswith("selfsup") and _file(p))
    return found


def static_closure(module: str) -> set[str]:
    """Every `selfsup` module ``module`` can import, function-level imports included."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(_imported(_file(name)))
    return seen


def loaded_after_import(module: str) -> list[str]:
    """The `selfsup` modules in ``sys.modules`` after importing ``module`` in a fresh interpreter."""
    code = (f"import sys; import {module}; "
            f"print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] == 'selfsup')))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return done.stdout.split()


@pytest.mark.parametrize("module", SCHEMA_MODULES)
def test_importing_a_schema_module_loads_no_method(module: str) -> None:
    loaded = loaded_after_import(module)
    assert module in loaded
    assert "selfsup.methods" not in loaded, f"import {module} loaded {loaded}"
    assert "selfsup.params" not in loaded, f"import {module} loaded {loaded}"


@pytest.mark.parametrize("module", SCHEMA_MODULES)
def test_no_schema_module_imports_the_methods_even_inside_a_function(module: str) -> None:
    closure = static_closure(module)
    assert not {m for m in closure if m == "selfsup.methods" or m.startswith("selfsup.methods.")}, closure
    assert "selfsup.params" not in closure


def test_the_params_layering_imports_the_methods_and_the_methods_never_import_it() -> None:
    assert "selfsup.methods" in loaded_after_import("selfsup.params")
    assert "selfsup.params" not in loaded_after_import("selfsup.methods")
    methods = [f"selfsup.methods.{p.stem}" for p in (SRC / "selfsup/methods").glob("*.py") if p.stem != "__init__"]
    reached = set().union(*(static_closure(m) for m in ["selfsup.methods", *methods]))
    assert not reached & {"selfsup.params", "selfsup.stage_config", "selfsup.cli"}, reached

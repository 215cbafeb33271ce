"""The configuration schema sits below the methods and the params layering above them: no cycle.

:mod:`selfsup.config` (with its image and video sections) must never import :mod:`selfsup.methods`,
not even inside a function, since the methods import it for their type of config;
:mod:`selfsup.params` imports the methods' registry and nothing the methods import may reach it.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import REPO
from test_stage_deps import import_closure, module_file

SRC = REPO / "src"
SCHEMA_MODULES = ("selfsup.config", "selfsup.config.image", "selfsup.config.video")


def reachable(module: str) -> set[str]:
    """Repository-relative files of every `selfsup` module ``module`` can import, function-level imports included."""
    return import_closure(module_file(module))


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
    closure = reachable(module)
    assert not {f for f in closure if f.startswith("src/selfsup/methods/")}, closure
    assert "src/selfsup/params.py" not in closure


def test_the_params_layering_imports_the_methods_and_the_methods_never_import_it() -> None:
    assert "selfsup.methods" in loaded_after_import("selfsup.params")
    assert "selfsup.params" not in loaded_after_import("selfsup.methods")
    reached = reachable("selfsup.methods")  # the registry imports every method module
    assert "src/selfsup/methods/byol.py" in reached
    assert not reached & {"src/selfsup/params.py", "src/selfsup/stage_config.py", "src/selfsup/cli.py"}, reached

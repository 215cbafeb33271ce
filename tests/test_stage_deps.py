"""Every stage of every dvc.yaml depends on the code it runs and on the params it reads.

For each stage, the `selfsup` modules its script imports (transitively, function-level imports
included) must each lie under one of the stage's deps, so DVC reruns the stage when any of them
changes. The configuration modules are the one exception: the schema (`selfsup.config` and its
image and video sections), the params layering (`selfsup.params`), `selfsup.schema` and
`selfsup.stage_config`. A stage run with `--config` reads its resolved params file, written by
`check_params` (which depends on them and on everything they import, such as the methods' knob
schemas that `selfsup.params` imports), so a changed default reaches exactly the stages whose file
it changes, and a changed method reruns no data stage.
"""

from __future__ import annotations

import ast
import shlex
from pathlib import Path

import pytest
from dvc.repo import Repo

from conftest import REPO
from selfsup.stage_config import STAGE_SECTIONS

SRC = REPO / "src"
CONFIG_MODULES = (*sorted(str(p.relative_to(REPO)) for p in (SRC / "selfsup/config").glob("*.py")),
                  "src/selfsup/params.py", "src/selfsup/schema.py", "src/selfsup/stage_config.py")


def module_file(name: str) -> Path | None:
    base = SRC / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _package_chain(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _imports(path: Path) -> set[str]:
    """`selfsup` modules ``path`` imports anywhere in its body (packages and submodules alike)."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] == "selfsup" and module_file(name) is not None:
                found.update(_package_chain(name))
    if path.name == "__init__.py" and "pkgutil.iter_modules(__path__)" in path.read_text():
        package = ".".join(path.parent.relative_to(SRC).parts)
        found.update(f"{package}.{p.stem}" for p in path.parent.glob("*.py") if p.stem != "__init__")
    return found


def _rel(name: str) -> str:
    return str(module_file(name).relative_to(REPO))


def import_closure(script: Path, stop: tuple[str, ...] = ()) -> set[str]:
    """Repository-relative files of every `selfsup` module ``script`` imports, transitively.

    Modules whose file is in ``stop`` are left out, and so is what only they import.
    """
    seen: set[str] = set()
    todo = list(_imports(script))
    while todo:
        name = todo.pop()
        if name in seen or _rel(name) in stop:
            continue
        seen.add(name)
        todo.extend(_imports(module_file(name)))
    return {_rel(n) for n in seen}


def _covered(file: str, deps: set[str]) -> bool:
    return any(file == d or file.startswith(d.rstrip("/") + "/") for d in deps)


def missing_deps(stage: object) -> list[str]:
    """The imported module files that none of ``stage``'s deps covers."""
    words = shlex.split(stage.cmd)
    script = next(w for w in words if w.startswith("stages/") and w.endswith(".py"))
    deps = {str(Path(str(d)).resolve().relative_to(REPO)) for d in stage.deps}
    assert script in deps, f"{stage.addressing}: its script {script} is not among its deps"
    script_stage = Path(script).stem
    resolved = ("--config" in words and words[words.index("--config") + 1] in deps
                or STAGE_SECTIONS.get(script_stage) == ())  # a stage that reads no params never loads them
    needed = import_closure(REPO / script, stop=CONFIG_MODULES if resolved else ())
    return sorted(f for f in needed if not _covered(f, deps))


@pytest.fixture(scope="module")
def stages() -> list:
    with Repo(str(REPO)) as repo:
        return list(repo.index.stages)


def test_every_stage_depends_on_every_module_it_imports(stages: list) -> None:
    missing = {s.addressing: missing_deps(s) for s in stages}
    assert {k: v for k, v in missing.items() if v} == {}


def test_every_stage_but_check_params_reads_resolved_params(stages: list) -> None:
    """Raw params files reach a stage only through check_params, whose outputs carry the resolved values."""
    for stage in stages:
        words = shlex.split(stage.cmd)
        if "stages/check_params.py" in words:
            continue
        deps = {str(Path(str(d)).resolve().relative_to(REPO)) for d in stage.deps}
        assert not {"params/methods", "params/presets"} & deps, stage.addressing
        assert not stage.params, f"{stage.addressing} lists params; it should read its resolved --config file"
        if "stages/figures.py" not in words:
            assert "--config" in words and words[words.index("--config") + 1] in deps, stage.addressing


def test_the_closure_follows_function_level_and_registry_imports() -> None:
    closure = import_closure(REPO / "stages/check_params.py")
    assert "src/selfsup/methods/barlow.py" in closure  # found by the registry's pkgutil discovery
    assert {"src/selfsup/params.py", "src/selfsup/config/__init__.py", "src/selfsup/config/video.py",
            "src/selfsup/io.py"} <= closure
    assert "src/selfsup/elo/model.py" not in closure
    assert "src/selfsup/data/real.py" in import_closure(REPO / "stages/prepare_images.py")  # inside a function


def test_a_stage_reading_resolved_params_reaches_the_methods_only_through_the_configuration() -> None:
    """So a changed method reruns check_params and the stages that build a method, never a data stage."""
    assert "src/selfsup/methods/__init__.py" in import_closure(REPO / "stages/segment.py")  # via selfsup.params
    for data_stage in ("prepare_images", "segment", "backgrounds", "prepare_video", "extract"):
        closure = import_closure(REPO / f"stages/{data_stage}.py", stop=CONFIG_MODULES)
        assert not {f for f in closure if f.startswith(("src/selfsup/methods/", "src/selfsup/config/"))}, data_stage

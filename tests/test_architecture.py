"""Issue 25: the house shows its rooms. The floors of pyproject.toml's layers contract, the packages
on disk and docs/architecture.md say the same thing, a breach of a floor fails lint-imports, and
no module outgrows its noun."""

from __future__ import annotations

import ast
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

import runner

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "runner"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _layers_contract() -> dict[str, Any]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["type"] == "layers"]
    return dict(contract)


def _floor_names() -> set[str]:
    names: set[str] = set()
    for layer in _layers_contract()["layers"]:
        names.update(part.strip() for part in re.split(r"[|:]", layer))
    return names


def _top_level() -> set[str]:
    return {m.name for m in pkgutil.iter_modules([str(PACKAGE)])}


def test_every_package_and_root_module_is_on_a_floor_and_in_the_architecture_page() -> None:
    contract = _layers_contract()
    assert contract["containers"] == ["runner"] and contract["exhaustive"] is True
    modules = _top_level() - {"__main__"}
    assert modules == _floor_names(), "pyproject.toml's layers and runner/ differ"
    page = (REPO / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"`([a-z_]+)`", page))
    missing = sorted(m for m in modules if m not in named)
    assert not missing, f"docs/architecture.md does not name {missing}"
    for package in (p for p in modules if (PACKAGE / p).is_dir()):
        own = {m.name for m in pkgutil.iter_modules([str(PACKAGE / package)])}
        unnamed = sorted(m for m in own if m not in named)
        assert not unnamed, f"docs/architecture.md does not name {package}'s {unnamed}"


def test_no_module_shares_a_name_with_a_public_api_name() -> None:
    assert not set(runner.__all__) & _top_level()
    assert type(runner) is type(os), "the package root is a plain module again"


def test_modules_own_one_noun_each() -> None:
    """A docstring saying what the module owns, at most 400 lines, and no grab-bag names."""
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        where = path.relative_to(REPO)
        assert ast.get_docstring(ast.parse(text)), f"{where} has no module docstring"
        assert text.count("\n") <= 400, f"{where} has {text.count(chr(10))} lines: split it by noun"
        assert path.stem not in {"utils", "helpers", "misc", "common"}, where


@pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed")
def test_a_breach_of_a_floor_fails_lint_imports(tmp_path: Path) -> None:
    """The contract is not decoration: the core reaching up into the CLI fails the check."""
    shutil.copytree(PACKAGE, tmp_path / "runner", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    kept = subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, check=False)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    spec = tmp_path / "runner" / "rendering" / "row.py"
    spec.write_text(spec.read_text() + "\nfrom runner.cli import commands as _reaches_up  # noqa\n")
    broken = subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, check=False)
    assert broken.returncode != 0
    assert "runner.rendering.row -> runner.cli.commands" in broken.stdout


def _run_lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tree, env=env,
                          capture_output=True, text=True, check=False)


def test_write_methods_are_exactly_what_backend_adds_to_the_reader() -> None:
    """The one-writer contract reads WRITE_METHODS: a write method added to Backend and not to the
    tuple would slip past it."""
    from runner.backends import base

    def members(cls: type) -> set[str]:
        return {n for n, v in vars(cls).items() if callable(v) and not n.startswith("_")}

    assert set(base.WRITE_METHODS) == members(base.Backend) - members(base.BackendReader)


def test_the_one_writer_scan_exempts_modules_not_backends() -> None:
    from runner.devtools.writecontract import breaches

    methods = frozenset({"unlock", "write_destination"})
    source = ("from runner import api\nimport runner.api as other\n"
              "def f(backend, ctx):\n    api.unlock(ctx, 'x')\n    other.unlock(ctx, 'y')\n"
              "    backend.write_destination(1, [], collected=[])\n    w = backend.unlock\n")
    assert breaches(source, methods) == [(6, "backend.write_destination"), (7, "backend.unlock")]
    # A store module of the backends, imported as a name, writes like a backend (review finding).
    store = ("from runner.backends.stores import files as localfiles\n"
             "import runner.backends.stores.files\n"
             "localfiles.write_destination(1, [], collected=[])\n")
    assert breaches(store, methods) == [(3, "localfiles.write_destination")]


@pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed")
def test_a_write_outside_the_writer_fails_lint_imports(tmp_path: Path) -> None:
    """Issue 25's one writer: observe/ (a reader) reaching a backend's write method breaks the
    contract, named by module and line."""
    shutil.copytree(PACKAGE, tmp_path / "runner", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    status = tmp_path / "runner" / "observe" / "status.py"
    lines = status.read_text().count("\n")
    status.write_text(status.read_text() + "\ndef _sneak(backend, dest):  # noqa\n"
                      "    backend.write_destination(dest, [], collected=[])\n")
    broken = _run_lint_imports(tmp_path)
    assert broken.returncode != 0, broken.stdout
    assert f"runner.observe.status:{lines + 3}  backend.write_destination" in broken.stdout


def test_a_row_climbs_back_up_at_most_twice_each_way(tmp_path: Path) -> None:
    """Issue 25's walks (`python -m runner.devtools.walk`): one row followed from the source to
    its plan line, and from a job's output line to its destination row, comes back up to a floor
    it had left at most twice each way (the output walk climbed 3 times while collect parsed each
    output a second time)."""
    from runner.devtools.walk import measure

    planned, collected = measure(tmp_path)
    assert planned.stays() and collected.stays(), "the walk did not see the row"
    assert planned.climbs_back() <= 2, planned.text("source row -> plan line")
    assert collected.climbs_back() <= 2, collected.text("job output line -> destination row")

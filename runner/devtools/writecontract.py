"""The `one writer` import-linter contract: no module outside the writer and the backends reaches
a write method of a backend. Reads source files only; run by lint-imports, never by batchrun.

An import contract sees modules, not attributes, and the backend is handed around as a value, so
this contract reads each module's syntax: any attribute named like a write method of Backend
(`x.stage`, `backend.write_destination`, …) outside the allowed modules breaks it, unless `x` is a
name bound by an import of anything but the backends (a module, such as `api.unlock`, is not a
backend; `runner.backends.stores.files`, imported as a name, writes like one).
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from typing import Any

from grimp import ImportGraph
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck

BACKENDS = "runner.backends"


def _matches(module: str, patterns: list[str]) -> bool:
    return any(module == p or (p.endswith(".*") and module.startswith(p[:-1])) for p in patterns)


def _source_file(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    return Path(spec.origin) if spec and spec.origin and spec.origin.endswith(".py") else None


def _imported_names(tree: ast.Module) -> set[str]:
    """Names bound by imports of anything but the backends: a backend's store module (imported
    as a name) writes destinations just as a backend does."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update((a.asname or a.name).split(".")[0] for a in node.names
                         if not a.name.startswith(BACKENDS))
        elif isinstance(node, ast.ImportFrom) and not (node.module or "").startswith(BACKENDS):
            names.update(a.asname or a.name for a in node.names)
    return names


def breaches(source: str, methods: frozenset[str]) -> list[tuple[int, str]]:
    """(line, expression) of every reach for a write method in one module's source."""
    tree = ast.parse(source)
    modules = _imported_names(tree)
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and node.attr in methods):
            continue
        if isinstance(node.value, ast.Name) and node.value.id in modules:
            continue
        found.append((node.lineno, ast.unparse(node)))
    return sorted(found)


class OneWriterContract(Contract):
    """Options: `methods` (a `module:NAME` tuple of method names), `allowed_modules` (module
    names, `pkg.*` for a package's descendants)."""

    type_name = "one_writer"

    methods = fields.StringField()
    allowed_modules = fields.ListField(subfield=fields.StringField())

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        module_name, _, attribute = str(self.methods).partition(":")
        methods = frozenset(getattr(importlib.import_module(module_name), attribute))
        allowed = [str(m) for m in self.allowed_modules]  # type: ignore[attr-defined]
        found: list[dict[str, Any]] = []
        roots = self.session_options.get("root_packages") or [self.session_options["root_package"]]
        for module in sorted(graph.modules):
            if module.split(".")[0] not in roots or _matches(module, allowed):
                continue
            path = _source_file(module)
            if path is None:
                continue
            for line, expression in breaches(path.read_text(encoding="utf-8"), methods):
                found.append({"module": module, "line": line, "expression": expression})
        return ContractCheck(kept=not found, metadata={"breaches": found})

    def render_broken_contract(self, check: ContractCheck) -> None:
        output.print_error("A write method of a backend is reached outside the writer; call the "
                           "Writer (runner/applying/writer.py) instead:")
        output.new_line()
        for b in check.metadata["breaches"]:
            output.print_error(f"-   {b['module']}:{b['line']}  {b['expression']}", bold=False)
        output.new_line()

"""Lazy imports for start-up: a module bound now, loaded on its first attribute access (the
standard library's importlib.util.LazyLoader), so `batchrun --help` does not pay for Jinja,
jsonschema, rich or the backends. Used by the edges and the package root only."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def lazy_module(name: str) -> ModuleType:
    """`name`, imported on first use (already imported: returned as it is)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ImportError(f"no module named {name!r}")
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module

"""batchrun: declarative LLM batch prediction on Vertex AI. The public API is re-exported here."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names below, for type checkers; at run time they load on first use
    from runner.api import (
        ApplyReport,
        JobStatus,
        Project,
        Usage,
        __version__,
        apply,
        apply_saved,
        cancel,
        converge,
        import_job,
        load_project,
        plan,
        render,
        results,
        retry,
        save_plan,
        status,
        unlock,
        usage,
    )
    from runner.errors import BatchrunError
    from runner.planning.plan import Plan

__all__ = [
    "ApplyReport",
    "BatchrunError",
    "JobStatus",
    "Plan",
    "Project",
    "Usage",
    "__version__",
    "apply",
    "apply_saved",
    "cancel",
    "converge",
    "import_job",
    "load_project",
    "plan",
    "render",
    "results",
    "retry",
    "save_plan",
    "status",
    "unlock",
    "usage",
]


# Where each public name lives; no module of the package shares a name with one (tests/test_architecture.py).
_HOME = {name: {"BatchrunError": "runner.errors", "Plan": "runner.planning.plan"}.get(name, "runner.api")
         for name in __all__}


def __getattr__(name: str) -> Any:
    """The API's functions and types, loaded on first use (PEP 562), so the CLI's start-up does not
    pay for them."""
    if name not in _HOME:
        raise AttributeError(f"module 'runner' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME[name]), name)
    globals()[name] = value
    return value

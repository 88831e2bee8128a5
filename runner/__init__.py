"""batchrun: declarative LLM batch prediction on Vertex AI. The public API is re-exported here."""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
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



class _Package(ModuleType):
    """The package's public names are the API's functions and types, loaded on first use (so the
    CLI's start-up does not pay for them), and stay so when a submodule of the same name (plan,
    apply, render...) is imported and bound on the package."""

    def __getattribute__(self, name: str) -> Any:
        if name in _HOME:
            return getattr(importlib.import_module(_HOME[name]), name)
        return super().__getattribute__(name)


_HOME = {name: {"BatchrunError": "runner.errors", "Plan": "runner.planning.plan"}.get(name, "runner.api")
         for name in __all__}
sys.modules[__name__].__class__ = _Package

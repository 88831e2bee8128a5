"""batchrun: declarative LLM batch prediction on Vertex AI. The public API is re-exported here."""

from __future__ import annotations

from runner.api import (
    ApplyReport,
    JobStatus,
    Project,
    apply,
    cancel,
    converge,
    load_project,
    plan,
    render,
    results,
    status,
    unlock,
)
from runner.errors import BatchrunError
from runner.plan import Plan

__version__ = "0.1.0"

__all__ = [
    "ApplyReport",
    "BatchrunError",
    "JobStatus",
    "Plan",
    "Project",
    "__version__",
    "apply",
    "cancel",
    "converge",
    "load_project",
    "plan",
    "render",
    "results",
    "status",
    "unlock",
]

"""batchrun: declarative LLM batch prediction on Vertex AI. The public API is re-exported here."""

from __future__ import annotations

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
from runner.plan import Plan

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

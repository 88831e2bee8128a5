"""Splitting the rows to send into jobs, and counting the job slots in use per quota pool: the one
splitting rule and the one pool rule the planner shows and apply carries out. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Sequence

from runner.backends.base import RemoteJob
from runner.models import catalog
from runner.spec import JOB_LIMITS, Family, Quota, Settings, Task


class Sharder:
    """Splits a stream of request lines into jobs within the per-job row and byte limits."""

    def __init__(self, settings: Settings, family: Family | None = None) -> None:
        rows, size = JOB_LIMITS.get(family.value, (None, None)) if family else (None, None)
        self.max_rows = min(settings.quota.max_rows_per_job, rows or settings.quota.max_rows_per_job)
        self.max_bytes = min(settings.quota.max_bytes_per_job,
                             size or settings.quota.max_bytes_per_job)
        self.shards = 0
        self._rows = self._bytes = 0

    def full(self, size: int) -> bool:
        """Whether a line of `size` bytes must start a new shard (the one splitting rule)."""
        return self.shards == 0 or self._rows >= self.max_rows or self._bytes + size > self.max_bytes

    def add(self, size: int) -> bool:
        """Count one line of `size` bytes; True when it starts a new shard."""
        if self.full(size):
            self.shards += 1
            self._rows = self._bytes = 0
            new = True
        else:
            new = False
        self._rows += 1
        self._bytes += size
        return new


def busy_slots(jobs: Sequence[RemoteJob]) -> int:
    return sum(1 for j in jobs if j.state.in_flight)


def job_family(job: RemoteJob) -> Family:
    """The request family of a job, by its model (a job of a model batchrun cannot read counts
    with Claude, the strictest documented quota)."""
    model = catalog.parse_model(job.model)
    if model is None:
        return Family.CLAUDE
    return catalog.family_of(model, catalog.known_task(model) or Task.CHAT)


def pool_of(family: Family, region: str | None, quota: Quota, regional: bool) -> str:
    """The job quota a manifest or job counts against. On a regional backend: its family's, across
    the project or in its region (quota.counted_per); else the backend's one pool."""
    if not regional:
        return ""
    where = "project" if quota.counted_per(family) == "project" else (region or "")
    return f"{family.value}@{where}"


def job_pool(job: RemoteJob, quota: Quota, regional: bool) -> str:
    return pool_of(job_family(job), job.region, quota, regional)


def pool_limit(family: Family, quota: Quota, regional: bool) -> int:
    """How many jobs the pool of `family` may run at once."""
    return quota.concurrent_jobs(family) if regional else quota.max_concurrent_jobs

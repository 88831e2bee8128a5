"""The hands-on writes a user asks for by name — `retry`, `cancel`, `import`, `gc` — carried out like
apply's own: under the manifest's locks, through apply's collect. Part of apply, the only writer."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from runner import collect
from runner.apply import ApplyReport, collect_finished, litter, locked
from runner.backends.base import Backend, IndexEntry
from runner.errors import BatchrunError
from runner.events import Event, Listener
from runner.ledger import failures_of, read_ledger, rendered_rows
from runner.outputs import parse_line
from runner.result import Status
from runner.spec import Manifest, Settings


def _quiet(_: Event) -> None:
    pass


@dataclass
class RetryReport:
    forgiven: list[str] = field(default_factory=list)  # ended jobs that no longer count to a block
    was_blocked: bool = False
    rows_reset: int = 0  # failed rows given a fresh set of attempts


def _fresh_attempts(row: dict[str, Any], spec_hash: str) -> dict[str, Any] | None:
    """The row with its failures under `spec_hash` given fresh attempts, or None if it has none."""
    if row.get("status") == Status.FAILED and row.get("spec_hash") == spec_hash and row.get(
            "attempts"):
        return {**row, "attempts": 0}
    retry = row.get("retry")
    if isinstance(retry, dict) and retry.get("spec_hash") == spec_hash and retry.get("attempts"):
        return {**row, "retry": {**retry, "attempts": 0}}
    return None


def retry(manifest: Manifest, backend: Backend, settings: Settings, *, failed: bool,
          say: Listener = _quiet) -> RetryReport:
    """After the user fixed a cause: set aside the job-level failures that block the manifest and,
    with `failed`, give rows out of attempts a fresh set. Both are recorded beside the destination,
    so the ledger stays the record; nothing is sent here."""
    report = RetryReport()
    with locked(backend, manifest):
        jobs = backend.list_jobs(manifest.name)
        collect_finished(manifest, backend, jobs, ApplyReport(), say)
        forgiven = backend.forgiven_jobs(manifest.destination)
        failures = failures_of(manifest, jobs, settings, forgiven, datetime.now(UTC), backend,
                               read_ledger(manifest, backend, jobs))
        report.was_blocked = failures.blocked
        # Every ended job of the manifest so far: none of them counts toward a block any more.
        report.forgiven = sorted(j.name for j in jobs if j.state.finished and j.name not in forgiven)
        if report.forgiven:
            backend.forgive_jobs(manifest.destination, report.forgiven)
        if failed and any(_fresh_attempts(row, manifest.spec_hash) is not None
                          for row in backend.read_destination(manifest.destination)):
            def rows() -> Iterator[tuple[dict[str, Any], bool]]:
                for row in backend.read_destination(manifest.destination):
                    fresh = _fresh_attempts(row, manifest.spec_hash)
                    if fresh is not None:
                        report.rows_reset += 1
                    yield (row, False) if fresh is None else (fresh, True)

            backend.write_destination(manifest.destination, rows(),
                                      collected=backend.collected_jobs(manifest.destination))
    return report


def cancel_running(manifest: Manifest, backend: Backend) -> list[str]:
    """`batchrun cancel`: ask every running job of the manifest to stop, under its locks."""
    running = [j.name for j in backend.list_jobs(manifest.name, in_flight_only=True)]
    with locked(backend, manifest):
        for job in running:
            backend.cancel_job(job)
    return running


def import_job(manifest: Manifest, backend: Backend, settings: Settings, job_name: str) -> int:
    """`batchrun import`: merge the answers of a job made outside batchrun for rows of this
    manifest's source into its destination, so they count as done. Returns how many."""
    job = backend.get_job(job_name)
    if not job.state.finished or job.output_uri is None:
        raise BatchrunError(f"job {job_name} is {job.state.short}; only a finished job with output "
                            "can be imported")
    index = [IndexEntry(r.custom_id, r.request_hash,
                        {k: r.row.data.get(k) for k in manifest.passthrough})
             for r in rendered_rows(manifest, backend, settings)]
    with locked(backend, manifest):
        updates: dict[str, list[dict[str, Any]]] = {}
        answered = {str(parse_line(line, manifest.family).custom_id)
                    for line in backend.read_output(job)}
        for row in collect.result_rows(manifest, job_name=job.name, job_spec_hash=manifest.spec_hash,
                                       finished_at=job.end_time or "",
                                       index=[e for e in index if e.custom_id in answered],
                                       output=backend.read_output(job)):
            if row["status"] == Status.SUCCEEDED:
                updates[row["custom_id"]] = [row]
        merged = collect.merge_rows(backend.read_destination(manifest.destination), updates,
                                    manifest.spec_hash)
        done = backend.collected_jobs(manifest.destination)
        backend.write_destination(manifest.destination, merged, collected=done | {job.name})
    return len(updates)


def gc(manifest: Manifest, backend: Backend, settings: Settings, *, dry_run: bool) -> list[str]:
    """`batchrun gc`: what apply removes after collecting, on demand (under the locks)."""
    if dry_run:
        return litter(manifest, backend, settings, dry_run=True)
    with locked(backend, manifest):
        return litter(manifest, backend, settings, dry_run=False)

"""The planner: reads the source, the destination and the jobs through a BackendReader and returns a
Plan. Reads only; apply re-uses its row pass to stage exactly the rows it classified as to do.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from runner import collect
from runner.backends.base import BackendReader, JobState, RemoteJob
from runner.manifest import display_path
from runner.plan import Action, Change, ManifestPlan, Orphan, Plan, RowCounts
from runner.reconcile import LedgerState, RowClass, RowFacts, classify, ledger_state
from runner.render import RenderedRow, render_rows
from runner.spec import Manifest, Settings

MAX_FAILURES_SHOWN = 10


@dataclass
class Ledger:
    """What is known of one manifest's rows beyond the source: destination, jobs and outputs."""

    spec_hash: str
    destination: dict[str, dict[str, Any]] = field(default_factory=dict)
    in_flight: dict[str, str] = field(default_factory=dict)  # custom_id -> request hash
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)  # uncollected results
    to_collect: list[RemoteJob] = field(default_factory=list)
    running_same: list[RemoteJob] = field(default_factory=list)
    running_stale: list[RemoteJob] = field(default_factory=list)  # old spec, still running

    def facts(self, row: RenderedRow, max_attempts: int) -> tuple[RowFacts, LedgerState]:
        stored = ledger_state(self.destination.get(row.custom_id), self.spec_hash,
                              row.request_hash)
        pending = self.pending.get(row.custom_id)
        pending_ok = pending_fail = False
        if pending is not None and (pending["spec_hash"], pending["request_hash"]) == (
                self.spec_hash, row.request_hash):
            pending_ok = pending["status"] == collect.SUCCEEDED
            pending_fail = not pending_ok
        if pending_fail and pending is not None:
            stored = LedgerState(stored.answered, stored.failures, pending["error"])
        facts = RowFacts(
            answered=stored.answered,
            pending_success=pending_ok,
            in_flight=self.in_flight.get(row.custom_id) == row.request_hash,
            failures=stored.failures + int(pending_fail),
            max_attempts=max_attempts,
        )
        return facts, stored


_KEPT = ("spec_hash", "request_hash", "status", "attempts", "error", "retry")


def read_ledger(manifest: Manifest, reader: BackendReader, jobs: Sequence[RemoteJob]) -> Ledger:
    ledger = Ledger(manifest.spec_hash)
    for row in reader.read_destination(manifest.destination):
        ledger.destination[str(row.get("custom_id"))] = {k: row.get(k) for k in _KEPT}
    collected = reader.collected_jobs(manifest.destination)
    for job in jobs:
        if job.manifest_name != manifest.name:
            continue
        if job.state.in_flight:
            if job.spec_hash == manifest.spec_hash:
                ledger.running_same.append(job)
                for entry in reader.read_index(job):
                    ledger.in_flight[entry.custom_id] = entry.request_hash
            else:
                ledger.running_stale.append(job)
        elif job.name not in collected:
            ledger.to_collect.append(job)
            if job.spec_hash == manifest.spec_hash:
                for result in job_results(manifest, reader, job):
                    ledger.pending[result["custom_id"]] = result
    return ledger


def job_results(manifest: Manifest, reader: BackendReader, job: RemoteJob) -> Iterator[
        dict[str, Any]]:
    error = None
    if job.state.finished and job.state.short not in ("succeeded", "partially_succeeded"):
        error = (f"job {job.state.short}: {job.error_message or 'no reason given'}"
                 + (f" (code {job.error_code})" if job.error_code is not None else ""))
    return collect.result_rows(
        manifest, job_name=job.name, job_spec_hash=job.spec_hash,
        finished_at=job.end_time or job.create_time or "",
        index=reader.read_index(job), output=reader.read_output(job) if error is None else (),
        job_error=error)


def rendered_rows(manifest: Manifest, reader: BackendReader, settings: Settings) -> Iterator[
        RenderedRow]:
    return render_rows(manifest, reader.read_source(manifest.source),
                       max_request_bytes=settings.quota.max_request_bytes,
                       source_name=display_path_of(manifest, settings))


def display_path_of(manifest: Manifest, settings: Settings) -> str:
    if manifest.source.kind.value == "file":
        return display_path(Path(manifest.source.location), settings.root)
    return manifest.source.location


def classified_rows(manifest: Manifest, reader: BackendReader, settings: Settings,
                    ledger: Ledger) -> Iterator[tuple[RenderedRow, RowClass, LedgerState]]:
    for row in rendered_rows(manifest, reader, settings):
        facts, stored = ledger.facts(row, manifest.max_attempts)
        yield row, classify(facts), stored


class Sharder:
    """Splits a stream of request lines into jobs within the per-job row and byte limits."""

    def __init__(self, settings: Settings) -> None:
        self.max_rows = settings.quota.max_rows_per_job
        self.max_bytes = settings.quota.max_bytes_per_job
        self.shards = 0
        self._rows = self._bytes = 0

    def add(self, size: int) -> bool:
        """Count one line of `size` bytes; True when it starts a new shard."""
        if self.shards == 0 or self._rows >= self.max_rows or self._bytes + size > self.max_bytes:
            self.shards += 1
            self._rows = self._bytes = 0
            new = True
        else:
            new = False
        self._rows += 1
        self._bytes += size
        return new


INTERNAL = 13


def hold_until(manifest: Manifest, jobs: Sequence[RemoteJob], settings: Settings,
               now: datetime) -> datetime | None:
    """When the newest job of this spec failed with INTERNAL, creates wait until this time."""
    mine = [j for j in jobs if j.manifest_name == manifest.name and j.spec_hash == manifest.spec_hash]
    if not mine:
        return None
    newest = max(mine, key=lambda j: j.create_time or "")
    if newest.state is not JobState.FAILED or newest.error_code != INTERNAL or not newest.end_time:
        return None
    until = datetime.fromisoformat(newest.end_time.replace("Z", "+00:00")) + timedelta(
        seconds=settings.quota.internal_retry_delay)
    return until if until > now else None


def plan_manifest(manifest: Manifest, reader: BackendReader, settings: Settings,
                  jobs: Sequence[RemoteJob], free_slots: int,
                  now: datetime | None = None) -> tuple[ManifestPlan, int]:
    """The plan of one manifest and the job slots it uses."""
    ledger = read_ledger(manifest, reader, jobs)
    held = hold_until(manifest, jobs, settings, now or datetime.now(UTC))
    counts = dict.fromkeys(RowClass, 0)
    failures: list[tuple[str, str]] = []
    sharder = Sharder(settings)
    shard_rows: list[int] = []
    chars = 0
    for row, kind, stored in classified_rows(manifest, reader, settings, ledger):
        counts[kind] += 1
        if kind is RowClass.TO_DO:
            if sharder.add(len(row.line) + 1):
                shard_rows.append(0)
            shard_rows[-1] += 1
            chars += len(row.line)
        elif kind is RowClass.FAILED and len(failures) < MAX_FAILURES_SHOWN:
            failures.append((row.custom_id, stored.last_error or "failed"))
    stale = ledger.running_stale
    # Cancelled jobs free their slot only once Vertex says so; count them as busy this time.
    slots = 0 if held else max(0, free_slots)
    now_shards = shard_rows[:slots]
    changes: list[Change] = []
    if ledger.to_collect:
        changes.append(Change(Action.COLLECT, "finished jobs hold answers",
                              tuple(j.name for j in ledger.to_collect)))
    if stale:
        changes.append(Change(Action.CANCEL, "spec changed",
                              tuple(j.name for j in stale)))
    if now_shards:
        changes.append(Change(Action.CREATE, "rows to do", rows=sum(now_shards),
                              shards=len(now_shards)))
    notes = []
    if held and shard_rows:
        notes.append(f"Vertex failed the last job with INTERNAL (code 13), as it does for the first "
                     f"job in a region; resubmitting after {held:%Y-%m-%d %H:%M:%S} UTC "
                     "(quota.internal_retry_delay)")
    if stale and manifest.family.value == "claude":
        notes.append("warning: a cancelled partner-model job yields no output; its rows are "
                     "sent again under the new spec")
    if stale and manifest.protect:
        notes.append("protected: apply refuses to cancel its jobs without --allow-cancel")
    rows = RowCounts(
        total=sum(counts.values()),
        done=counts[RowClass.DONE],
        in_flight=counts[RowClass.IN_FLIGHT],
        to_do=counts[RowClass.TO_DO],
        failed=counts[RowClass.FAILED],
        waiting=sum(shard_rows[slots:]),
    )
    plan = ManifestPlan(
        name=manifest.name, file=display_path(manifest.file, settings.root),
        spec_hash=manifest.spec_hash, rows=rows, changes=tuple(changes),
        input_tokens=chars // 4 if now_shards else 0, failures=tuple(failures),
        notes=tuple(notes))
    return plan, len(now_shards)


def busy_slots(jobs: Sequence[RemoteJob]) -> int:
    return sum(1 for j in jobs if j.state.in_flight)


def make_plan(manifests: Sequence[Manifest], reader: BackendReader, settings: Settings,
              *, prune: bool = False) -> Plan:
    """Read-only: one listing of the jobs for all manifests, then a row pass per manifest."""
    jobs = reader.list_jobs()
    free = settings.quota.max_concurrent_jobs - busy_slots(jobs)
    plans = []
    for manifest in manifests:
        plan, used = plan_manifest(manifest, reader, settings, jobs, free)
        free -= used
        plans.append(plan)
    names = {m.name for m in manifests}
    orphans = tuple(Orphan(j.manifest_name, j.name, prune) for j in jobs
                    if j.manifest_name not in names and j.state.in_flight)
    return Plan(backend=reader.kind, manifests=tuple(plans), orphans=orphans)

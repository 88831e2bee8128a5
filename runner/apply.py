"""Apply: carries out a plan through the read/write Backend — and `retry`, `cancel` and `import`. The
only module that changes remote state.

Per manifest, under its lock: cancel what the plan cancels, collect finished jobs into the
destination, then stage and create jobs for the rows still to do, re-reading the jobs right before
each create so a crash or a second run never sends a row twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from runner import collect, crashpoints, identity
from runner.backends.base import Backend, IndexEntry, JobRequest, RemoteJob, StagedInput
from runner.errors import (
    ApprovalError,
    BatchrunError,
    LockError,
    QuotaError,
    RowsChangedError,
    error,
)
from runner.ledger import (
    Ledger,
    Sharder,
    busy_slots,
    classified_rows,
    failures_of,
    job_results,
    read_ledger,
    rendered_rows,
)
from runner.outputs import parse_line
from runner.paths import destination_key
from runner.plan import Action, Change, Plan
from runner.reconcile import RowClass
from runner.render import RenderedRow
from runner.spec import Manifest, Settings

Event = Callable[[str], None]


def _n(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


@dataclass
class ApplyReport:
    created: list[str] = field(default_factory=list)
    collected: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    rows_sent: int = 0
    rows_collected: int = 0
    rows_to_do_again: int = 0  # caught in a job-level failure: no attempt used
    skipped: list[str] = field(default_factory=list)  # creates found already done, and why


def _quiet(_: str) -> None:
    pass


def lock_names(manifest: Manifest) -> tuple[str, str]:
    """The manifest's lock and its destination's: two manifests (or two checkouts) writing one
    place cannot write it at once, whatever their names."""
    kind, where = destination_key(manifest.destination)
    return manifest.name, "destination-" + hashlib.sha256(f"{kind}:{where}".encode()).hexdigest()[:20]


@contextlib.contextmanager
def locked(backend: Backend, manifest: Manifest) -> Iterator[None]:
    name, dest = lock_names(manifest)
    with backend.lock(name), _destination_lock(backend, manifest, dest):
        yield


@contextlib.contextmanager
def _destination_lock(backend: Backend, manifest: Manifest, lock_name: str) -> Iterator[None]:
    """The destination's lock, its refusal said in terms of the destination, not of a hash."""
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(backend.lock(lock_name))
        except LockError as exc:
            who = (exc.diagnostics[0].summary.removeprefix(f"{lock_name} is being applied by ")
                   .removesuffix("; try again when it finishes"))
            raise LockError([error(
                f"{manifest.name}: its destination {manifest.destination.location} is being "
                f"written by another apply: {who}", hint="try again when it finishes")]) from None
        yield


def collect_finished(manifest: Manifest, backend: Backend, jobs: Sequence[RemoteJob],
                     report: ApplyReport, say: Event = _quiet) -> None:
    """Merge every finished, uncollected job of the manifest into its destination, in one write.

    Streams: answers for ids the destination surely lacks are spooled to a temp file and appended;
    only answers that may meet an existing row (or another answer) are held for the merge.
    """
    done = backend.collected_jobs(manifest.destination)
    todo = sorted((j for j in jobs if j.manifest_name == manifest.name and j.state.finished
                   and j.name not in done), key=lambda j: j.end_time or j.create_time or "")
    if not todo:
        return
    seen = collect.IdFilter()
    for row in backend.read_destination(manifest.destination):
        seen.check_and_add(str(row.get("custom_id")))
    updates: dict[str, list[dict[str, Any]]] = {}
    tally = collect.Tally()
    with tempfile.TemporaryFile() as spool:
        for job in todo:  # oldest first, so a newer answer is merged after an older one
            for row in job_results(manifest, backend, job, tally):
                report.rows_collected += 1
                if seen.check_and_add(row["custom_id"]):
                    updates.setdefault(row["custom_id"], []).append(row)
                else:
                    spool.write(orjson.dumps(row) + b"\n")
        spool.seek(0)
        merged = collect.merge_rows(backend.read_destination(manifest.destination), updates,
                                    manifest.spec_hash,
                                    appended=(orjson.loads(line) for line in spool))
        crashpoints.reached("collect")
        backend.write_destination(manifest.destination, merged,
                                  collected=done | {j.name for j in todo})
    crashpoints.reached("collected")
    report.collected.extend(j.name for j in todo)
    report.rows_to_do_again += tally.to_do_again
    again = (f"; {_n(tally.to_do_again, 'unanswered row')} to do again, no attempt used"
             if tally.to_do_again else "")
    ended = [f"{j.state.short}" for j in todo if j.state.short not in ("succeeded",)]
    how = f" ({', '.join(sorted(set(ended)))})" if ended else ""
    say(f"{manifest.name}: collected {_n(len(todo), 'job')}{how}: {tally.answered:,} answered, "
        f"{tally.refused:,} refused by the model{again}")


class _Peekable:
    def __init__(self, rows: Iterator[RenderedRow]) -> None:
        self._rows = rows
        self._next: RenderedRow | None = None

    def peek(self) -> RenderedRow | None:
        if self._next is None:
            self._next = next(self._rows, None)
        return self._next

    def pop(self) -> RenderedRow:
        row = self.peek()
        assert row is not None
        self._next = None
        return row


def _shard(rows: _Peekable, manifest: Manifest, settings: Settings) -> Iterator[
        tuple[bytes, IndexEntry]]:
    """The rows of one job: as many as fit, by the planner's own splitting rule."""
    sharder = Sharder(settings)
    while (row := rows.peek()) is not None:
        size = len(row.line) + 1
        if sharder.shards and sharder.full(size):
            return
        sharder.add(size)
        rows.pop()
        yield row.line, IndexEntry(
            custom_id=row.custom_id, request_hash=row.request_hash,
            passthrough={k: row.row.data.get(k) for k in manifest.passthrough},
            input_chars=len(row.line))


def _stage_planned(manifest: Manifest, backend: Backend, settings: Settings, ledger: Ledger,
                   planned: Change) -> list[StagedInput]:
    """Render, classify and stage the rows to do, as many shards as the plan created, and check
    they are the very rows the plan showed (staging is content-addressed, so refusing after it
    costs nothing). Rows added or changed since the plan: nothing is created."""
    to_do = _Peekable(row for row, kind, _ in classified_rows(manifest, backend, settings, ledger)
                      if kind is RowClass.TO_DO)
    digest = hashlib.sha256()

    def counted(rows: Iterator[tuple[bytes, IndexEntry]]) -> Iterator[tuple[bytes, IndexEntry]]:
        for line, entry in rows:
            digest.update(entry.request_hash.encode())
            yield line, entry

    staged: list[StagedInput] = []
    while to_do.peek() is not None and len(staged) < planned.shards:
        crashpoints.reached("stage")
        staged.append(backend.stage(manifest.name, counted(_shard(to_do, manifest, settings))))
        crashpoints.reached("staged")
    rows = sum(s.rows for s in staged)
    if rows != planned.rows or (planned.digest and digest.hexdigest()[:32] != planned.digest):
        raise RowsChangedError([error(
            f"{manifest.name}: the rows to send changed since the plan ({_n(rows, 'row')} now, "
            f"{planned.rows:,} in the plan); nothing was sent",
            hint="the source or the answers moved on: look at the new plan and apply it")])
    return staged


def create_jobs(manifest: Manifest, backend: Backend, settings: Settings, report: ApplyReport,
                planned: Change, say: Event = _quiet) -> None:
    """Create the jobs the plan showed, with exactly its rows (RowsChangedError otherwise),
    re-reading the jobs right before each create."""
    if busy_slots(backend.list_jobs(in_flight_only=True)) >= settings.quota.max_concurrent_jobs:
        return
    jobs = backend.list_jobs(manifest.name)
    ledger = read_ledger(manifest, backend, jobs)
    failures = failures_of(manifest, jobs, settings, backend.forgiven_jobs(manifest.destination),
                           datetime.now(UTC), backend, ledger)
    if failures.blocked:
        say(f"{manifest.name}: blocked after {_n(failures.streak, 'job-level failure')}; fix the cause, "
            f"then run `batchrun retry {manifest.name}`")
        return
    if failures.hold_until is not None:
        say(f"{manifest.name}: resubmitting after {failures.hold_until:%H:%M:%S} UTC (the last job "
            "ended at job level; no row attempt was used)")
        return
    for shard, staged in enumerate(_stage_planned(manifest, backend, settings, ledger, planned)):
        fresh = backend.list_jobs(in_flight_only=True)  # right before the create: what runs now?
        # An earlier finished job may hold the same rows (a retry of the same failed rows): only a
        # job still in flight means these rows are already being answered.
        twin = next((j for j in fresh if j.manifest_name == manifest.name
                     and j.input_digest == staged.digest), None)
        if twin is not None:
            report.skipped.append(f"{manifest.name}: rows already staged in {twin.name}")
            continue
        if busy_slots(fresh) >= settings.quota.max_concurrent_jobs:
            say(f"{manifest.name}: job quota full; the remaining rows wait for the next apply")
            return
        try:
            job = backend.create_job(JobRequest(
                display_name=identity.display_name(manifest, shard),
                model=manifest.model.resource,
                family=manifest.family,
                input=staged,
                labels=identity.job_labels(manifest, input_digest=staged.digest, shard=shard),
                manifest_name=manifest.name, source=manifest.source,
                destination=manifest.destination, response_format=manifest.response.format,
                response_schema=manifest.response.schema,
            ))
        except QuotaError as exc:
            say(f"{manifest.name}: {exc}; the remaining rows wait for the next apply")
            return
        crashpoints.reached("created")
        report.created.append(job.name)
        report.rows_sent += staged.rows
        say(f"{manifest.name}: created {job.name} with {staged.rows} rows")


def apply_plan(plan: Plan, manifests: Sequence[Manifest], backend: Backend, settings: Settings,
               *, allow_cancel: bool = False, say: Event = _quiet) -> ApplyReport:
    """Carry out `plan`. Cancels only what it lists; creates only for manifests it plans to create."""
    report = ApplyReport()
    by_name = {m.name: m for m in manifests}
    for mplan in plan.manifests:
        manifest = by_name[mplan.name]
        if not mplan.has_changes:
            continue
        with locked(backend, manifest):
            for change in mplan.changes:
                if change.action is Action.CANCEL:
                    if manifest.protect and not allow_cancel:
                        raise ApprovalError(f"{manifest.name} is protected: refusing to cancel "
                                            f"{_n(len(change.jobs), 'running job')}; pass "
                                            "--allow-cancel to replace them")
                    for job in change.jobs:
                        crashpoints.reached("cancel")
                        backend.cancel_job(job)
                        report.cancelled.append(job)
                        say(f"{manifest.name}: cancelled {job}")
            collect_finished(manifest, backend, backend.list_jobs(manifest.name), report, say)
            planned = next((c for c in mplan.changes if c.action is Action.CREATE), None)
            if planned is not None:  # rows only waiting for a slot wait for the next plan
                create_jobs(manifest, backend, settings, report, planned, say)
    for orphan in plan.orphans:
        if orphan.cancel:
            backend.cancel_job(orphan.job)
            report.cancelled.append(orphan.job)
            say(f"{orphan.manifest_name}: cancelled {orphan.job} (manifest removed, --prune)")
    return report


@dataclass
class RetryReport:
    forgiven: list[str] = field(default_factory=list)  # ended jobs that no longer count to a block
    was_blocked: bool = False
    rows_reset: int = 0  # failed rows given a fresh set of attempts


def _fresh_attempts(row: dict[str, Any], spec_hash: str) -> dict[str, Any] | None:
    """The row with its failures under `spec_hash` given fresh attempts, or None if it has none."""
    if row.get("status") == collect.FAILED and row.get("spec_hash") == spec_hash and row.get(
            "attempts"):
        return {**row, "attempts": 0}
    retry = row.get("retry")
    if isinstance(retry, dict) and retry.get("spec_hash") == spec_hash and retry.get("attempts"):
        return {**row, "retry": {**retry, "attempts": 0}}
    return None


def retry(manifest: Manifest, backend: Backend, settings: Settings, *, failed: bool,
          say: Event = _quiet) -> RetryReport:
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
            if row["status"] == collect.SUCCEEDED:
                updates[row["custom_id"]] = [row]
        merged = collect.merge_rows(backend.read_destination(manifest.destination), updates,
                                    manifest.spec_hash)
        done = backend.collected_jobs(manifest.destination)
        backend.write_destination(manifest.destination, merged, collected=done | {job.name})
    return len(updates)

"""Apply: carries out a plan, with the rows its row pass prepared, each write a step of the
Writer (writer.py). With handson (the commands a user asks for by name), the only code that
decides a change to remote state.

Per manifest, under its locks: cancel what the plan cancels, collect finished jobs into the
destination, remove old leftovers (gc), reshape what only needs reshaping, then stage and create
jobs for exactly the plan's rows, re-reading the jobs right before each create so a crash or a
second run never sends a row twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence

from runner import crashpoints, identity
from runner.applying.collector import collect_finished, reshape
from runner.applying.litter import litter
from runner.applying.report import ApplyReport, quiet
from runner.applying.writer import Writer
from runner.backends.base import (
    IndexEntry,
    JobRequest,
    RemoteJob,
    StagedInput,
)
from runner.errors import (
    ApprovalError,
    QuotaError,
    RowsChangedError,
    error,
    n,
)
from runner.events import (
    Cancelled,
    Created,
    Listener,
    QuotaFull,
    SourceMoved,
)
from runner.planning.plan import Action, Change, ManifestPlan, Plan
from runner.planning.prepared import Prepared, Work
from runner.planning.shards import Sharder, busy_slots, job_pool, pool_limit, pool_of
from runner.spec import Family, Manifest, Settings

log = logging.getLogger(__name__)


class _Peekable:
    def __init__(self, rows: Iterator[tuple[bytes, IndexEntry]]) -> None:
        self._rows = rows
        self._next: tuple[bytes, IndexEntry] | None = None

    def peek(self) -> tuple[bytes, IndexEntry] | None:
        if self._next is None:
            self._next = next(self._rows, None)
        return self._next

    def pop(self) -> None:
        self._next = None


def _shard(rows: _Peekable, settings: Settings,
           family: Family) -> Iterator[tuple[bytes, IndexEntry]]:
    """The rows of one job: as many as fit, by the planner's own splitting rule."""
    sharder = Sharder(settings, family)
    while (row := rows.peek()) is not None:
        size = len(row[0]) + 1
        if sharder.shards and sharder.full(size):
            return
        sharder.add(size)
        rows.pop()
        yield row


def _unchanged(manifest: Manifest, planned: Change, prepared: Prepared,
               jobs: Sequence[RemoteJob]) -> None:
    """RowsChangedError unless the rows prepared are the plan's and no job was made for the
    manifest since (another apply sending the same rows): then nothing is sent."""
    if prepared.rows != planned.rows or prepared.digest != planned.digest:
        raise RowsChangedError([error(
            f"{manifest.name}: the rows to send changed since the plan ({n(prepared.rows, 'row')} "
            f"now, {planned.rows:,} in the plan); nothing was sent",
            hint="the source or the answers moved on: look at the new plan and apply it")])
    _no_new_jobs(manifest, prepared, jobs)


def _no_new_jobs(manifest: Manifest, prepared: Prepared, jobs: Sequence[RemoteJob],
                 ours: Sequence[str] = ()) -> None:
    """RowsChangedError if a job not ours was made for the manifest since the plan, in any state:
    one that another apply created and finished meanwhile answered rows we are about to send."""
    new = sorted(j.name for j in jobs if j.manifest_name == manifest.name
                 and j.name not in prepared.jobs_seen and j.name not in ours)
    if new:
        raise RowsChangedError([error(
            f"{manifest.name}: {n(len(new), 'job')} {'was' if len(new) == 1 else 'were'} created "
            "for it since the plan "
            f"(another apply?), e.g. {new[0]}; nothing {'more ' if ours else ''}was sent",
            hint="look at the new plan: its rows may be answered already")])


def job_request(manifest: Manifest, staged: StagedInput, display_name: str,
                labels: Mapping[str, str]) -> JobRequest:
    """The job of a manifest's staged rows, as the backend creates it."""
    return JobRequest(
        display_name=display_name, model=manifest.model.resource, family=manifest.family,
        input=staged, labels=labels, manifest_name=manifest.name, source=manifest.source,
        destination=manifest.destination, response_format=manifest.response.format,
        response_schema=manifest.response.schema, region=manifest.region)


def create_jobs(manifest: Manifest, writer: Writer, settings: Settings, report: ApplyReport,
                planned: Change, prepared: Prepared, say: Listener = quiet) -> None:
    """Create the plan's jobs from the rows it prepared, re-reading the manifest's jobs (any state)
    and the running ones right before each create."""
    backend = writer.reader
    quota = settings.quota
    pool = pool_of(manifest.family, manifest.region, quota, backend.regional)
    limit = pool_limit(manifest.family, quota, backend.regional)

    def busy(jobs: Sequence[RemoteJob]) -> int:
        """Slots in use in the manifest's quota pool (its family's, across the project or in its
        region): this project's jobs just listed, and other batchrun projects' that listing set
        aside."""
        return busy_slots([j for j in (*jobs, *backend.foreign_jobs())
                           if job_pool(j, quota, backend.regional) == pool])

    if busy(backend.list_jobs(in_flight_only=True)) >= limit:
        return
    rows = _Peekable(prepared.entries())
    for shard in range(planned.shards):
        if rows.peek() is None:
            return
        crashpoints.reached("stage")
        staged = writer.stage_rows(manifest.name, _shard(rows, settings, manifest.family))
        crashpoints.reached("staged")
        fresh = backend.list_jobs(in_flight_only=True)  # right before the create: what runs now?
        # Every job of the manifest, finished ones too: one made since the plan stops us.
        _no_new_jobs(manifest, prepared, backend.list_jobs(manifest.name), ours=report.created)
        # An earlier finished job may hold the same rows (a retry of the same failed rows): only a
        # job still in flight means these rows are already being answered.
        twin = next((j for j in fresh if j.manifest_name == manifest.name
                     and j.input_digest == staged.digest), None)
        if twin is not None:
            report.skipped.append(f"{manifest.name}: rows already staged in {twin.name}")
            continue
        if busy(fresh) >= limit:
            say(QuotaFull(manifest.name))
            return
        try:
            job = writer.create(job_request(
                manifest, staged, identity.display_name(manifest, shard),
                identity.job_labels(manifest, input_digest=staged.digest, shard=shard)))
        except QuotaError as exc:
            say(QuotaFull(manifest.name, str(exc)))
            return
        crashpoints.reached("created")
        report.created.append(job.name)
        report.rows_sent += staged.rows
        say(Created(manifest.name, job.name, staged.rows))


def _apply_manifest(mplan: ManifestPlan, manifest: Manifest, writer: Writer,
                    settings: Settings, prepared: Prepared, report: ApplyReport, *,
                    allow_cancel: bool, say: Listener) -> None:
    backend = writer.reader
    planned = next((c for c in mplan.changes if c.action is Action.CREATE), None)
    jobs = backend.list_jobs(manifest.name)
    if planned is not None:
        _unchanged(manifest, planned, prepared, jobs)
    for change in mplan.changes:
        if change.action is Action.CANCEL:
            if manifest.protect and not allow_cancel:
                raise ApprovalError(f"{manifest.name} is protected: refusing to cancel "
                                    f"{n(len(change.jobs), 'running job')}; pass "
                                    "--allow-cancel to replace them")
            for job in change.jobs:
                crashpoints.reached("cancel")
                writer.cancel(job)
                report.cancelled.append(job)
                say(Cancelled(manifest.name, job))
    # The row pass's ids stand while the destination is the version the plan read (a hand edit,
    # or another apply's collect, between the two: they are read again).
    same = backend.destination_stamp(manifest.destination) == prepared.destination_stamp
    # The record of collected jobs, read once under the lock: this apply's own writes extend it.
    collected = collect_finished(manifest, writer, jobs, report, say,
                                 prepared.ids if same else None, prepared.results,
                                 backend.collected_jobs(manifest.destination))
    report.removed += litter(manifest, writer, settings, dry_run=False, jobs=jobs,
                             collected=collected)
    if any(c.action in (Action.RESHAPE, Action.REFRESH) for c in mplan.changes):
        reshape(manifest, writer, prepared, report, collected, say)
    if planned is None:  # rows only waiting for a slot wait for the next plan
        return
    create_jobs(manifest, writer, settings, report, planned, prepared, say)
    if prepared.source_stamp is not None and prepared.source_stamp != backend.source_stamp(
            manifest.source):
        report.source_moved.append(manifest.name)
        say(SourceMoved(manifest.name))


def apply_plan(plan: Plan, manifests: Sequence[Manifest], writer: Writer, settings: Settings,
               work: Work, *, allow_cancel: bool = False, say: Listener = quiet) -> ApplyReport:
    """Carry out `plan` with the rows its row pass prepared (`work`). Cancels only what it lists;
    creates only what it shows, or nothing (RowsChangedError)."""
    report = ApplyReport()
    by_name = {m.name: m for m in manifests}
    for mplan in plan.manifests:
        manifest = by_name[mplan.name]
        if not mplan.has_changes:
            continue
        with writer.locked(manifest):
            _apply_manifest(mplan, manifest, writer, settings,
                            work.get(mplan.name) or Prepared(mplan.name), report,
                            allow_cancel=allow_cancel, say=say)
    for orphan in plan.orphans:
        if orphan.cancel:
            writer.cancel(orphan.job)
            report.cancelled.append(orphan.job)
            say(Cancelled(orphan.manifest_name, orphan.job, orphan=True))
    return report



"""The planner: reads the source, the destination and the jobs through a BackendReader and returns a
Plan. Reads only; apply re-uses its row pass to stage exactly the rows it classified as to do.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from runner import collect, estimate, identity
from runner.backends.base import BackendReader, RemoteJob
from runner.errors import BackendError
from runner.manifest import display_path
from runner.plan import Action, Blocked, Change, Estimate, ManifestPlan, Orphan, Plan, RowCounts
from runner.reconcile import (
    FailurePolicy,
    JobEnd,
    JobFailures,
    LedgerState,
    RowClass,
    RowFacts,
    classify,
    job_failures,
    ledger_entries,
)
from runner.redact import redact
from runner.render import RenderedRow, render_rows
from runner.rows import RowIssue, SourceRow
from runner.spec import Family, Manifest, Settings

MAX_FAILURES_SHOWN = 10


def row_key(custom_id: str, request_hash: str) -> int:
    """One row under one request as a machine word: a million done rows fit in tens of MB."""
    return hash((custom_id, request_hash))


@dataclass
class Ledger:
    """What is known of one manifest's rows beyond the source, under the current spec hash, keyed
    by row_key: the destination's answers and failures, rows in flight, uncollected outputs."""

    spec_hash: str
    answered_keys: set[int] = field(default_factory=set)
    failures: dict[int, tuple[int, str | None]] = field(default_factory=dict)
    in_flight: set[int] = field(default_factory=set)
    pending: dict[int, tuple[bool, str | None]] = field(default_factory=dict)  # ok, error
    to_collect: list[RemoteJob] = field(default_factory=list)
    running_stale: list[RemoteJob] = field(default_factory=list)  # old spec, still running
    # Running, but which rows or spec is not known (a damaged record): nothing is sent or
    # cancelled for the manifest until the user has looked.
    unknown: list[RemoteJob] = field(default_factory=list)
    answered: int = 0  # succeeded destination rows with usage, for the output-token estimate
    output_tokens: int = 0

    def has_trace(self, custom_id: str, request_hash: str) -> bool:
        """Whether this row under this request has an answer or a recorded refusal."""
        key = row_key(custom_id, request_hash)
        return key in self.answered_keys or key in self.failures or key in self.pending

    def facts(self, row: RenderedRow, max_attempts: int) -> tuple[RowFacts, LedgerState]:
        key = row_key(row.custom_id, row.request_hash)
        attempts, error = self.failures.get(key, (0, None))
        pending_ok, pending_error = self.pending.get(key, (False, None))
        pending_fail = key in self.pending and not pending_ok
        stored = LedgerState(key in self.answered_keys, attempts + int(pending_fail),
                             pending_error if pending_fail else error)
        facts = RowFacts(
            answered=stored.answered,
            pending_success=pending_ok,
            in_flight=key in self.in_flight,
            failures=stored.failures,
            max_attempts=max_attempts,
        )
        return facts, stored


def read_ledger(manifest: Manifest, reader: BackendReader, jobs: Sequence[RemoteJob]) -> Ledger:
    ledger = Ledger(manifest.spec_hash)
    for row in reader.read_destination(manifest.destination):
        custom_id = str(row.get("custom_id"))
        for request_hash, state in ledger_entries(row, manifest.spec_hash):
            key = row_key(custom_id, request_hash)
            if state.answered:
                ledger.answered_keys.add(key)
            else:
                ledger.failures[key] = (state.failures, state.last_error)
        usage = row.get("usage")
        if row.get("status") == collect.SUCCEEDED and isinstance(usage, dict):
            ledger.answered += 1
            ledger.output_tokens += int(usage.get("output_tokens") or 0)
    collected = reader.collected_jobs(manifest.destination)
    for job in jobs:
        if job.manifest_name not in (manifest.name, ""):  # "": a damaged record, anyone's
            continue
        if job.state.in_flight:
            if not job.spec_hash or not job.input_digest:
                ledger.unknown.append(job)
            elif job.spec_hash == manifest.spec_hash:
                for entry in reader.read_index(job):
                    ledger.in_flight.add(row_key(entry.custom_id, entry.request_hash))
            else:
                ledger.running_stale.append(job)
        elif job.name not in collected:
            ledger.to_collect.append(job)
            if job.spec_hash == manifest.spec_hash:
                for result in job_results(manifest, reader, job):
                    key = row_key(result["custom_id"], result["request_hash"])
                    ok = result["status"] == collect.SUCCEEDED
                    if ok or not ledger.pending.get(key, (False, None))[0]:
                        ledger.pending[key] = (ok, result["error"])
    return ledger


def job_results(manifest: Manifest, reader: BackendReader, job: RemoteJob,
                tally: collect.Tally | None = None) -> Iterator[dict[str, Any]]:
    """The answers and refusals a finished job wrote, whatever state it ended in: a failed, expired
    or cancelled job's output is read too, since what it answered was paid for."""
    return collect.result_rows(
        manifest, job_name=job.name, job_spec_hash=job.spec_hash,
        finished_at=job.end_time or job.create_time or "",
        index=reader.read_index(job), output=reader.read_output(job), tally=tally)


def _source_rows(manifest: Manifest, reader: BackendReader,
                 settings: Settings) -> Iterator[SourceRow | RowIssue]:
    """The source's rows; a source the backend refuses (a query that would write, a file that is
    gone) is reported against the manifest that names it."""
    try:
        yield from reader.read_source(manifest.source)
    except BackendError as exc:
        source = manifest.source
        key = ("query" if source.is_query else "table") if source.kind.value == "bigquery" \
            else source.kind.value
        path = f"spec.source.{source.kind.value}" + (
            f".{key}" if source.kind.value == "bigquery" else "")
        raise BackendError([
            replace(d, file=display_path(manifest.file, settings.root),
                    line=source.line or manifest.line, path=path) if d.file is None else d
            for d in exc.diagnostics]) from exc


def rendered_rows(manifest: Manifest, reader: BackendReader, settings: Settings) -> Iterator[
        RenderedRow]:
    return render_rows(manifest, _source_rows(manifest, reader, settings),
                       max_request_bytes=settings.quota.max_request_bytes,
                       source_name=display_path_of(manifest, settings),
                       max_id_chars=settings.quota.max_id_chars,
                       reread=lambda: _source_rows(manifest, reader, settings),
                       manifest_file=display_path(manifest.file, settings.root))


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


def failure_policy(settings: Settings) -> FailurePolicy:
    q = settings.quota
    return FailurePolicy(max_job_failures=q.max_job_failures, backoff=q.failure_backoff,
                         backoff_max=q.failure_backoff_max, internal_delay=q.internal_retry_delay)


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def failures_of(manifest: Manifest, jobs: Sequence[RemoteJob], settings: Settings,
                forgiven: set[str], now: datetime, reader: BackendReader,
                ledger: Ledger) -> JobFailures:
    """The job-level failures of this spec: when creates may resume, or that they are blocked.

    A job that ended well but whose rows left no trace in the ledger counts too, when the same
    rows were staged again: otherwise a destination that does not record answers, or a 429 on
    every line, would have apply --wait pay for them in a loop. Only such re-sent inputs have
    their index read (and only until one row shows a trace)."""
    ended = [j for j in jobs if j.manifest_name == manifest.name and j.state.finished]
    mine = [j for j in ended if j.spec_hash == manifest.spec_hash]
    digests = [j.input_digest for j in mine]

    def end(j: RemoteJob, trace: bool = True) -> JobEnd:
        return JobEnd(j.name, j.input_digest, j.state.short, j.create_time or "",
                      _time(j.end_time), j.error_code, j.error_message, trace)

    ends = []
    for j in mine:
        trace = True
        if j.state.short in ("succeeded", "partially_succeeded") and digests.count(
                j.input_digest) > 1:
            trace = any(ledger.has_trace(e.custom_id, e.request_hash) for e in reader.read_index(j))
        ends.append(end(j, trace))
    others = [end(j) for j in ended if j.spec_hash != manifest.spec_hash]
    return job_failures(ends, failure_policy(settings), frozenset(forgiven), now, others)


def _blocked(failures: JobFailures) -> Blocked | None:
    if not failures.blocked or failures.last is None:
        return None
    last = failures.last
    return Blocked(since=last.ended.strftime("%Y-%m-%d %H:%M:%S UTC") if last.ended else "unknown",
                   error=redact(last.error_text), failures=failures.streak,
                   credentials=failures.auth)


def _notes(manifest: Manifest, settings: Settings, job_ends: JobFailures, held: datetime | None,
           cancelling: bool) -> list[str]:
    notes = []
    last = job_ends.last
    if held and last is not None and last.code == 13:
        notes.append(f"Vertex failed the last job with INTERNAL (code 13), as it does for the first "
                     f"job in a region; resubmitting after {held:%Y-%m-%d %H:%M:%S} UTC "
                     "(quota.internal_retry_delay)")
    elif held and last is not None:
        notes.append(f"the last job ended {last.state} ({redact(last.error_text)}); no attempt of "
                     f"any row was used. Resubmitting after {held:%Y-%m-%d %H:%M:%S} UTC "
                     f"(failure {job_ends.streak} of {settings.quota.max_job_failures} before the "
                     "manifest is blocked; quota.failure_backoff)")
    if cancelling and manifest.family.value == "claude":
        notes.append("warning: a cancelled partner-model job may leave no output; what it wrote "
                     "is collected, its other rows are sent again under the new spec")
    if cancelling and manifest.protect:
        notes.append("protected: apply refuses to cancel its jobs without --allow-cancel")
    return notes


def plan_manifest(manifest: Manifest, reader: BackendReader, settings: Settings,
                  jobs: Sequence[RemoteJob], free_slots: int,
                  now: datetime | None = None, exact_tokens: bool = False) -> tuple[ManifestPlan, int]:
    """The plan of one manifest and the job slots it uses."""
    ledger = read_ledger(manifest, reader, jobs)
    job_ends = failures_of(manifest, jobs, settings, reader.forgiven_jobs(manifest.destination),
                           now or datetime.now(UTC), reader, ledger)
    held, blocked = job_ends.hold_until, _blocked(job_ends)
    if ledger.unknown:
        job = ledger.unknown[0]
        blocked = Blocked(since=job.create_time or "unknown", failures=0, credentials=False,
                          error=job.error_message or f"job {job.name} runs without batchrun's "
                                "spec or input labels, so its rows cannot be told")
    counts = dict.fromkeys(RowClass, 0)
    failures: list[tuple[str, str]] = []
    sharder = Sharder(settings)
    shard_rows: list[int] = []
    # Cancelled jobs free their slot only once Vertex says so; count them as busy this time.
    slots = 0 if held or blocked else max(0, free_slots)
    send = hashlib.sha256()  # the rows this apply may send: apply checks it sends exactly these
    input_tokens = 0
    source_digest = hashlib.sha256()
    for row, kind, stored in classified_rows(manifest, reader, settings, ledger):
        source_digest.update(f"{row.custom_id}\0{row.request_hash}\n".encode())
        counts[kind] += 1
        if kind is RowClass.TO_DO:
            if sharder.add(len(row.line) + 1):
                shard_rows.append(0)
            shard_rows[-1] += 1
            if len(shard_rows) <= slots:
                send.update(row.request_hash.encode())
            exact = (reader.count_tokens(manifest.family, manifest.model.resource,
                                         orjson.loads(row.line)) if exact_tokens else None)
            input_tokens += exact if exact is not None else estimate.approx_tokens(row.prompt_chars)
        elif kind is RowClass.FAILED and len(failures) < MAX_FAILURES_SHOWN:
            failures.append((row.custom_id, stored.last_error or "failed"))
    stale = ledger.running_stale
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
                              shards=len(now_shards), digest=send.hexdigest()[:32]))
    notes = _notes(manifest, settings, job_ends, held if shard_rows else None, bool(stale))
    rows = RowCounts(
        total=sum(counts.values()),
        done=counts[RowClass.DONE],
        in_flight=counts[RowClass.IN_FLIGHT],
        to_do=counts[RowClass.TO_DO],
        failed=counts[RowClass.FAILED],
        waiting=0 if blocked else sum(shard_rows[slots:]),
    )
    cost = cost_estimate(manifest, settings, ledger, rows.to_do, input_tokens)
    if cost.over_budget:
        notes.append(over_budget_text(cost))
    plan = ManifestPlan(
        name=manifest.name, file=display_path(manifest.file, settings.root),
        spec_hash=manifest.spec_hash, rows=rows, changes=tuple(changes),
        failures=tuple(failures), notes=tuple(notes), estimate=cost,
        manifest_digest=manifest.digest, source_digest=source_digest.hexdigest()[:32],
        blocked=blocked, hold_until=held.strftime("%Y-%m-%dT%H:%M:%SZ") if held else None)
    return plan, len(now_shards)


def over_budget_text(e: Estimate) -> str:
    if e.cost is None:
        return (f"over budget: no price is known for this model, so it cannot be checked against "
                f"max_cost ${e.max_cost or 0:,.2f}")
    return f"over budget: estimated ${e.cost:,.2f} is more than max_cost ${e.max_cost or 0:,.2f}"


def cost_estimate(manifest: Manifest, settings: Settings, ledger: Ledger, rows: int,
                  input_tokens: int) -> Estimate:
    """Tokens and cost of the rows to do. Output tokens follow the manifest's own past answers when
    it has some, else max_tokens per row, an upper bound."""
    max_tokens = manifest.parameters.get("max_tokens") or manifest.parameters.get(
        "max_completion_tokens")
    if manifest.family is Family.OPENAI_EMBEDDINGS:
        output, basis = 0, "embeddings"
    elif ledger.answered:
        per_row = ledger.output_tokens / ledger.answered
        if isinstance(max_tokens, int):
            per_row = min(per_row, max_tokens)
        output, basis = round(per_row * rows), "history"
    elif isinstance(max_tokens, int):
        output, basis = max_tokens * rows, "max_tokens"
    else:
        output, basis = 0, "unknown"
    price = estimate.price_for(manifest.model, settings.pricing)
    cost = price.cost(input_tokens, output) if price else None
    over = manifest.max_cost is not None and (cost is None or cost > manifest.max_cost) and rows > 0
    return Estimate(input_tokens=input_tokens, output_tokens=output, output_basis=basis, cost=cost,
                    max_cost=manifest.max_cost, over_budget=over)


def observed_digest(jobs: Sequence[RemoteJob], names: set[str]) -> str:
    """What a saved plan saw of the remote jobs: any change makes it stale."""
    seen = sorted((j.name, j.state.value, j.spec_hash, j.input_digest) for j in jobs
                  if j.manifest_name in names or j.state.in_flight)
    return identity.digest(identity.canonical_json(seen))


def busy_slots(jobs: Sequence[RemoteJob]) -> int:
    return sum(1 for j in jobs if j.state.in_flight)


def make_plan(manifests: Sequence[Manifest], reader: BackendReader, settings: Settings,
              *, prune: bool = False, exact_tokens: bool = False) -> Plan:
    """Read-only: one listing of the jobs for all manifests, then a row pass per manifest."""
    jobs = reader.list_jobs()
    free = settings.quota.max_concurrent_jobs - busy_slots(jobs)
    by_name: dict[str, list[RemoteJob]] = {}
    for job in jobs:  # one pass: plans scale with the listing, not manifests x jobs
        by_name.setdefault(job.manifest_name, []).append(job)
    unknown = by_name.get("", [])  # a damaged job record of no known manifest: everyone waits
    plans = []
    for manifest in manifests:
        plan, used = plan_manifest(manifest, reader, settings,
                                   by_name.get(manifest.name, []) + unknown, free,
                                   exact_tokens=exact_tokens)
        free -= used
        plans.append(plan)
    names = {m.name for m in manifests}
    orphans = tuple(Orphan(j.manifest_name, j.name, prune) for j in jobs
                    if j.manifest_name not in names and j.manifest_name and j.state.in_flight)
    total = sum(p.estimate.cost or 0 for p in plans)
    budget_notes: tuple[str, ...] = ()
    if settings.max_cost is not None and (total > settings.max_cost or any(
            p.estimate.cost is None and p.rows.to_do for p in plans)):
        budget_notes = (f"over budget: this apply is estimated at ${total:,.2f}, more than "
                        f"max_cost ${settings.max_cost:,.2f}",)
    return Plan(backend=reader.kind, manifests=tuple(plans), orphans=orphans,
                observed_digest=observed_digest(jobs, names), budget_notes=budget_notes,
                max_cost=settings.max_cost)

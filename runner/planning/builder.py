"""The planner: turns the row pass (runner.ledger) over every manifest into a Plan — counts,
changes, estimates, holds and blocks. Reads only; apply carries the plan out.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import orjson

from runner import estimate, identity
from runner.answers.spool import ResultSpool
from runner.backends.base import BackendReader, RemoteJob
from runner.errors import BackendError, error
from runner.estimate import Estimate
from runner.identity import PARTS_LABEL
from runner.ledger.jobfailures import failures_of
from runner.ledger.rowpass import Ledger, classified_rows, index_entry, read_ledger, row_key
from runner.ledger.rules import RowClass
from runner.ledger.streak import JobFailures
from runner.planning.plan import (
    Action,
    Blocked,
    Change,
    ManifestPlan,
    Note,
    NoteKind,
    Orphan,
    Plan,
    RowCounts,
    SpecChange,
)
from runner.planning.prepared import Prepared, Work
from runner.planning.shards import Sharder, job_pool, pool_limit, pool_of
from runner.project.files import display_path
from runner.redact import redact
from runner.rpc import Code
from runner.spec import Family, Manifest, Settings

MAX_FAILURES_SHOWN = 10


def _blocked(failures: JobFailures, ledger: Ledger) -> Blocked | None:
    if ledger.unknown:
        job = ledger.unknown[0]
        return Blocked(since=job.create_time or "unknown", failures=0, credentials=False,
                       error=job.error_message or f"job {job.name} runs without batchrun's "
                             "spec or input labels, so its rows cannot be told")
    if not failures.blocked or failures.last is None:
        return None
    last = failures.last
    return Blocked(since=last.ended.strftime("%Y-%m-%d %H:%M:%S UTC") if last.ended else "unknown",
                   error=redact(last.error_text), failures=failures.streak,
                   credentials=failures.auth)


def _notes(manifest: Manifest, settings: Settings, job_ends: JobFailures, held: datetime | None,
           cancelling: bool) -> list[Note]:
    notes = []
    last = job_ends.last
    until = f"{held:%Y-%m-%d %H:%M:%S}" if held else None
    if held and last is not None and last.code == Code.INTERNAL:
        notes.append(Note(NoteKind.INTERNAL_HOLD, until=until))
    elif held and last is not None:
        notes.append(Note(NoteKind.FAILURE_HOLD, until=until, state=last.state,
                          error=redact(last.error_text), failures=job_ends.streak,
                          max_failures=settings.quota.max_job_failures))
    if cancelling and manifest.family.value == "claude":
        notes.append(Note(NoteKind.CANCEL_MAY_LOSE_OUTPUT))
    if cancelling and manifest.protect:
        notes.append(Note(NoteKind.PROTECTED))
    return notes


def _identity_notes(ledger: Ledger, refreshed: int) -> list[Note]:
    """Why stored answers do not count as they stand: another answerer made them, or their
    passthrough columns are not the manifest's (reshaped, free)."""
    notes = [Note(NoteKind.OTHER_ANSWERER, rows=count, answered_by=who, answerer=ledger.answerer)
             for who, count in sorted(ledger.other_answerers.items())]
    if refreshed:
        notes.append(Note(NoteKind.PASSTHROUGH, rows=refreshed))
    return notes


def _check_placement(manifest: Manifest, reader: BackendReader, settings: Settings) -> None:
    """A job whose BigQuery data is in another location fails at import, after the wait: refuse
    it now, at plan time."""
    problems = reader.placement_problems(manifest.region, manifest.source, manifest.destination)
    if problems:
        raise BackendError([error(
            f"{manifest.name}: dataset `{dataset}` is in {location}, the job runs in "
            f"{manifest.region}: Vertex reads and writes BigQuery only in the job's region",
            file=display_path(manifest.file, settings.root), line=manifest.line, path="spec.region",
            hint=f"set spec.region: {location.lower()} (a model that runs there), or use a "
                 f"dataset in {manifest.region}") for dataset, location in problems])


def what_changed(manifest: Manifest, specs: Iterable[str],
                 jobs: Sequence[RemoteJob]) -> tuple[str, ...]:
    """Which parts of the spec (prompt, model...) differ from these older specs, as their jobs'
    PARTS_LABEL recorded them; () when no job of theirs is left to tell."""
    now = identity.spec_parts(manifest)
    recorded = {j.spec_hash: j.labels[PARTS_LABEL] for j in jobs if j.labels.get(PARTS_LABEL)}
    changed: set[str] = set()
    for spec in specs:
        if spec in recorded:
            changed.update(identity.changed_parts(recorded[spec], now) or ())
    return tuple(sorted(changed))


def _spec_changed(manifest: Manifest, specs: Iterable[str], jobs: Sequence[RemoteJob]) -> str:
    changed = what_changed(manifest, specs, jobs)
    return "spec changed" + (f": {', '.join(changed)}" if changed else "")


def _changes(manifest: Manifest, ledger: Ledger, reshape: int, shards: list[int], digest: str,
             jobs: Sequence[RemoteJob]) -> list[Change]:
    """What apply is to do for one manifest, in the order it does it."""
    changes: list[Change] = []
    if ledger.to_collect:
        changes.append(Change(Action.COLLECT, "finished jobs hold answers",
                              tuple(j.name for j in ledger.to_collect)))
    if ledger.running_stale or ledger.running_other:
        stale = _spec_changed(manifest, {j.spec_hash for j in ledger.running_stale}, jobs)
        reason = " or ".join(why for why, running in ((stale, ledger.running_stale),
                                                      ("executor changed", ledger.running_other))
                             if running)
        changes.append(Change(Action.CANCEL, reason, tuple(
            j.name for j in (*ledger.running_stale, *ledger.running_other))))
    if reshape:
        changes.append(Change(Action.RESHAPE, "how answers are shaped changed", rows=reshape))
    if shards:
        changes.append(Change(Action.CREATE, "rows to do", rows=sum(shards), shards=len(shards),
                              digest=digest))
    return changes


def _seen(prepared: Prepared, manifest: Manifest, reader: BackendReader,
          jobs: Sequence[RemoteJob]) -> ResultSpool:
    """What the plan saw before it read the rows: apply compares it with what it finds. The
    spool the row pass keeps the jobs' result rows in, for apply's collect."""
    prepared.source_stamp = reader.source_stamp(manifest.source)
    prepared.jobs_seen = frozenset(j.name for j in jobs)
    prepared.destination_stamp = reader.destination_stamp(manifest.destination)
    prepared.results = ResultSpool()
    return prepared.results


def plan_manifest(manifest: Manifest, reader: BackendReader, settings: Settings,
                  jobs: Sequence[RemoteJob], free_slots: int,
                  now: datetime | None = None, exact_tokens: bool = False,
                  prepared: Prepared | None = None) -> tuple[ManifestPlan, int]:
    """The plan of one manifest and the job slots it uses. With `prepared`, the rows it plans to
    send are kept there for apply, as rendered now."""
    _check_placement(manifest, reader, settings)
    # before the source is read: a change during the read is noticed
    results = _seen(prepared, manifest, reader, jobs) if prepared is not None else None
    ledger = read_ledger(manifest, reader, jobs, settings, results)
    if prepared is not None:
        prepared.ids = ledger.ids
    job_ends = failures_of(manifest, jobs, settings, reader.forgiven_jobs(manifest.destination),
                           now or datetime.now(UTC), reader, ledger)
    held, blocked = job_ends.hold_until, _blocked(job_ends, ledger)
    counts = dict.fromkeys(RowClass, 0)
    failures: list[tuple[str, str]] = []
    sharder = Sharder(settings)
    shard_rows: list[int] = []
    # Cancelled jobs free their slot only once Vertex says so; count them as busy this time.
    slots = 0 if held or blocked else max(0, free_slots)
    send = hashlib.sha256()  # the rows this apply may send: apply checks it sends exactly these
    tally = estimate.Tally(estimate.price_for(manifest.model, settings.pricing))
    source_digest = hashlib.sha256()
    kept = 0  # done rows whose answer is kept from an older spec (on_change: forward)
    refreshed = 0  # rows to reshape only for their passthrough columns
    rerun = 0  # rows to do answered under an older spec: the spec changed, they are not new
    for row, kind, stored in classified_rows(manifest, reader, settings, ledger):
        source_digest.update(f"{row.custom_id}\0{row.request_hash or row.source_fp}\n".encode())
        counts[kind] += 1
        kept += row.skipped and row.source_fp not in ledger.answered_fps
        if kind is RowClass.TO_DO:
            rerun += hash(row.custom_id) in ledger.older_ids
            if sharder.add(len(row.line) + 1):
                shard_rows.append(0)
            shard_rows[-1] += 1
            if len(shard_rows) <= slots:
                send.update(row.request_hash.encode())
                if prepared is not None:
                    prepared.add(row.line, index_entry(manifest, row))
            exact = (reader.count_tokens(manifest.family, manifest.model.resource,
                                         orjson.loads(row.line)) if exact_tokens else None)
            tally.add(exact if exact is not None else estimate.approx_tokens(row.prompt_chars))
        elif kind is RowClass.RESHAPE:
            key = row_key(row.custom_id, row.request_hash)
            refreshed += key in ledger.refresh
            if prepared is not None:  # the source's passthrough values: a reshape refreshes them
                prepared.reshape[key] = {k: row.row.data.get(k) for k in manifest.passthrough}
        elif kind is RowClass.FAILED and len(failures) < MAX_FAILURES_SHOWN:
            failures.append((row.custom_id, stored.last_error or "failed"))
    counts[RowClass.DONE] += ledger.unchanged  # left in BigQuery: answered, never read here
    source_digest.update(f"unchanged {ledger.unchanged}\n".encode())
    now_shards = shard_rows[:slots]
    changes = _changes(manifest, ledger, 0 if blocked else counts[RowClass.RESHAPE], now_shards,
                       send.hexdigest()[:32], jobs)
    notes = _notes(manifest, settings, job_ends, held if shard_rows else None,
                   bool(ledger.running_stale or ledger.running_other))
    notes += _identity_notes(ledger, 0 if blocked else refreshed)
    rows = RowCounts(
        total=sum(counts.values()),
        done=counts[RowClass.DONE],
        in_flight=counts[RowClass.IN_FLIGHT],
        to_do=counts[RowClass.TO_DO],
        failed=counts[RowClass.FAILED],
        reshape=counts[RowClass.RESHAPE],
        kept=kept,
        waiting=0 if blocked else sum(shard_rows[slots:]),
    )
    cost = cost_estimate(manifest, ledger, tally)
    plan = ManifestPlan(
        name=manifest.name, file=display_path(manifest.file, settings.root),
        spec_hash=manifest.spec_hash, rows=rows, changes=tuple(changes),
        failures=tuple(failures), notes=tuple(notes), estimate=cost,
        manifest_digest=manifest.digest, source_digest=source_digest.hexdigest()[:32],
        blocked=blocked, hold_until=held.strftime("%Y-%m-%dT%H:%M:%SZ") if held else None,
        region=manifest.region if reader.regional else None,
        spec_change=SpecChange(rerun, what_changed(manifest, ledger.older_specs, jobs),
                               tuple(sorted(ledger.older_specs))) if rerun else None)
    return plan, len(now_shards)


def cost_estimate(manifest: Manifest, ledger: Ledger, tally: estimate.Tally) -> Estimate:
    """Tokens and cost of the rows to do, each row's input in its own price band. Output tokens
    follow the manifest's own past answers when it has some, else max_tokens per row, an upper
    bound."""
    rows = tally.rows
    max_tokens = manifest.parameters.get("max_tokens") or manifest.parameters.get(
        "max_completion_tokens")
    per_row: float
    if manifest.family is Family.OPENAI_EMBEDDINGS:
        per_row, output, basis = 0, 0, "embeddings"
    elif ledger.answered:
        per_row = ledger.output_tokens / ledger.answered
        if isinstance(max_tokens, int):
            per_row = min(per_row, max_tokens)
        output, basis = round(per_row * rows), "history"
    elif isinstance(max_tokens, int):
        per_row, output, basis = max_tokens, max_tokens * rows, "max_tokens"
    else:
        per_row, output, basis = 0, 0, "unknown"
    cost = tally.cost(per_row)
    over = manifest.max_cost is not None and (cost is None or cost > manifest.max_cost) and rows > 0
    return Estimate(input_tokens=tally.tokens, output_tokens=output, output_basis=basis, cost=cost,
                    max_cost=manifest.max_cost, over_budget=over)


def observed_digest(jobs: Sequence[RemoteJob], names: set[str]) -> str:
    """What a saved plan saw of the remote jobs: any change makes it stale."""
    seen = sorted((j.name, j.state.value, j.spec_hash, j.input_digest) for j in jobs
                  if j.manifest_name in names or j.state.in_flight)
    return identity.digest(identity.canonical_json(seen))


def make_plan(manifests: Sequence[Manifest], reader: BackendReader, settings: Settings,
              *, prune: bool = False, exact_tokens: bool = False, work: Work | None = None) -> Plan:
    """Read-only: one listing of the jobs for all manifests, then a row pass per manifest. With
    `work`, the rows each manifest is to send are kept there for apply."""
    jobs = reader.list_jobs()
    # Other batchrun projects' running jobs are none of these manifests', but use the same quota.
    quota = settings.quota
    busy = Counter(job_pool(j, quota, reader.regional) for j in (*jobs, *reader.foreign_jobs())
                   if j.state.in_flight)
    free: dict[str, int] = {}  # job slots left per quota pool (a family's, per project or region)
    by_name: dict[str, list[RemoteJob]] = {}
    for job in jobs:  # one pass: plans scale with the listing, not manifests x jobs
        by_name.setdefault(job.manifest_name, []).append(job)
    unknown = by_name.get("", [])  # a damaged job record of no known manifest: everyone waits
    plans = []
    for manifest in manifests:
        prepared = None
        if work is not None:
            prepared = work.manifests[manifest.name] = Prepared(manifest.name)
        pool = pool_of(manifest.family, manifest.region, quota, reader.regional)
        free.setdefault(pool, pool_limit(manifest.family, quota, reader.regional) - busy[pool])
        plan, used = plan_manifest(manifest, reader, settings,
                                   by_name.get(manifest.name, []) + unknown, free[pool],
                                   exact_tokens=exact_tokens, prepared=prepared)
        free[pool] -= used
        plans.append(plan)
    names = {m.name for m in manifests}
    orphans = tuple(Orphan(j.manifest_name, j.name, prune) for j in jobs
                    if j.manifest_name not in names and j.manifest_name and j.state.in_flight)
    total = sum(p.estimate.cost or 0 for p in plans)
    over = settings.max_cost is not None and (total > settings.max_cost or any(
        p.estimate.cost is None and p.rows.to_do for p in plans))
    return Plan(backend=reader.kind, manifests=tuple(plans), orphans=orphans,
                observed_digest=observed_digest(jobs, names), total_over_budget=over,
                max_cost=settings.max_cost)

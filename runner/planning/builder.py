"""The planner: turns the row pass (runner.ledger) over every manifest into a Plan — counts,
changes, estimates, holds and blocks. Reads only; apply carries the plan out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from runner import estimate, identity
from runner.answers.spool import ResultSpool
from runner.backends.base import BackendReader, RemoteJob
from runner.errors import BackendError, error
from runner.estimate import Estimate
from runner.identity import PARTS_LABEL
from runner.ledger.jobfailures import failures_of
from runner.ledger.rowpass import Ledger, classified_rows, read_ledger
from runner.ledger.rules import RowClass
from runner.ledger.streak import JobFailures
from runner.planning.counting import RowTally
from runner.planning.plan import (
    Action,
    Blocked,
    Change,
    ManifestPlan,
    Note,
    NoteKind,
    Orphan,
    Plan,
    SpecChange,
)
from runner.planning.prepared import Prepared, Work
from runner.planning.shards import job_pool, pool_limit, pool_of
from runner.project.files import display_path
from runner.redact import redact
from runner.rpc import Code
from runner.spec import Family, Manifest, Settings


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
                   credentials=failures.auth, import_failure=failures.imported)


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


def _identity_notes(manifest: Manifest, ledger: Ledger, refreshed: int,
                    fingerprints: int) -> list[Note]:
    """Why stored answers do not count as they stand: another answerer made them, or their
    passthrough columns are not the manifest's (reshaped, free); and answers that stand but whose
    rows were known by their request alone (their fingerprints refreshed, free)."""
    notes = [Note(NoteKind.OTHER_ANSWERER, rows=count, answered_by=who, answerer=ledger.answerer)
             for who, count in sorted(ledger.other_answerers.items())]
    if refreshed:
        notes.append(Note(NoteKind.PASSTHROUGH, rows=refreshed))
    if fingerprints:
        forward = manifest.on_change == "forward"
        notes.append(Note(NoteKind.FINGERPRINTS, rows=fingerprints,
                          legacy=not forward and bool(ledger.legacy_fps),
                          by_values=forward and bool(ledger.line_fps)))
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


def _changes(manifest: Manifest, ledger: Ledger, reshape: int, refresh: int, shards: list[int],
             digest: str, jobs: Sequence[RemoteJob]) -> list[Change]:
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
    if refresh:
        changes.append(Change(Action.REFRESH, "source rows known by their request, not their "
                                              "fingerprint", rows=refresh))
    if shards:
        changes.append(Change(Action.CREATE, "rows to do", rows=sum(shards), shards=len(shards),
                              digest=digest))
    return changes


def _seen(manifest: Manifest, reader: BackendReader, jobs: Sequence[RemoteJob]) -> Prepared:
    """What the plan saw before it read the rows (apply compares it with what it finds), and the
    spool the row pass keeps the jobs' result rows in, for apply's collect."""
    return Prepared(manifest.name, source_stamp=reader.source_stamp(manifest.source),
                    jobs_seen=frozenset(j.name for j in jobs),
                    destination_stamp=reader.destination_stamp(manifest.destination),
                    results=ResultSpool())


def plan_manifest(manifest: Manifest, reader: BackendReader, settings: Settings,
                  jobs: Sequence[RemoteJob], free_slots: int,
                  now: datetime | None = None, exact_tokens: bool = False, keep: bool = False
                  ) -> tuple[ManifestPlan, int, Prepared | None]:
    """The plan of one manifest, the job slots it uses and, with `keep`, the rows it plans to
    send as rendered now (for apply)."""
    _check_placement(manifest, reader, settings)
    # before the source is read: a change during the read is noticed
    prepared = _seen(manifest, reader, jobs) if keep else None
    try:
        plan, used = _plan_rows(manifest, reader, settings, jobs, free_slots, now, exact_tokens,
                                prepared)
    except BaseException:
        if prepared is not None:  # its spools are apply's only once the plan is whole
            prepared.close()
        raise
    return plan, used, prepared


def _plan_rows(manifest: Manifest, reader: BackendReader, settings: Settings,
               jobs: Sequence[RemoteJob], free_slots: int, now: datetime | None,
               exact_tokens: bool, prepared: Prepared | None) -> tuple[ManifestPlan, int]:
    """The row pass, classed and counted, made into the manifest's plan."""
    ledger = read_ledger(manifest, reader, jobs, settings, prepared.results if prepared else None)
    if prepared is not None:
        prepared.ids = ledger.ids
    job_ends = failures_of(manifest, jobs, settings, reader.forgiven_jobs(manifest.destination),
                           now or datetime.now(UTC), reader, ledger)
    held, blocked = job_ends.hold_until, _blocked(job_ends, ledger)
    # Cancelled jobs free their slot only once Vertex says so; count them as busy this time.
    counted = RowTally.start(manifest, ledger, settings,
                             0 if held or blocked else max(0, free_slots), reader, exact_tokens,
                             prepared)
    for row, kind, stored in classified_rows(manifest, reader, settings, ledger):
        counted.add(row, kind, stored)
    counted.finish()
    changes = _changes(manifest, ledger, 0 if blocked else counted.counts[RowClass.RESHAPE],
                       0 if blocked else counted.fingerprints, counted.now_shards,
                       counted.send.hexdigest()[:32], jobs)
    notes = _notes(manifest, settings, job_ends, held if counted.shards else None,
                   bool(ledger.running_stale or ledger.running_other))
    notes += _identity_notes(manifest, ledger, 0 if blocked else counted.refreshed,
                             0 if blocked else counted.fingerprints)
    plan = ManifestPlan(
        name=manifest.name, file=display_path(manifest.file, settings.root),
        spec_hash=manifest.spec_hash, rows=counted.rows(blocked is not None),
        changes=tuple(changes), failures=tuple(counted.failures), notes=tuple(notes),
        estimate=cost_estimate(manifest, ledger, counted.tally),
        manifest_digest=manifest.digest, source_digest=counted.source.hexdigest()[:32],
        blocked=blocked, hold_until=held.strftime("%Y-%m-%dT%H:%M:%SZ") if held else None,
        region=manifest.region if reader.regional else None,
        spec_change=SpecChange(counted.rerun, what_changed(manifest, ledger.older_specs, jobs),
                               tuple(sorted(ledger.older_specs))) if counted.rerun else None)
    return plan, len(counted.now_shards)


def cost_estimate(manifest: Manifest, ledger: Ledger, tally: estimate.Tally) -> Estimate:
    """Tokens and cost of the rows to do, each row's input in its own price band. Output tokens
    follow the manifest's own past answers when it has some, else max_tokens per row, an upper
    bound."""
    rows = tally.rows
    max_tokens = (manifest.parameters.get("max_tokens")
                  or manifest.parameters.get("max_completion_tokens")
                  or manifest.parameters.get("maxOutputTokens"))  # Gemini's name; thoughts aside
    per_row: float
    if manifest.family in (Family.OPENAI_EMBEDDINGS, Family.GEMINI_EMBEDDINGS):
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
        pool = pool_of(manifest.family, manifest.region, quota, reader.regional)
        free.setdefault(pool, pool_limit(manifest.family, quota, reader.regional) - busy[pool])
        plan, used, prepared = plan_manifest(manifest, reader, settings,
                                             by_name.get(manifest.name, []) + unknown, free[pool],
                                             exact_tokens=exact_tokens, keep=work is not None)
        if work is not None and prepared is not None:
            work.manifests[manifest.name] = prepared
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

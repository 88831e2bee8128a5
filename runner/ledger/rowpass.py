"""The row pass, owned here and shared: read a manifest's ledger (destination, running and
finished jobs), render and classify its rows (splitting them into jobs is sharding's, judging
job-level failures jobfailures'). The planner uses it to decide, apply to do. Reads only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner import identity
from runner.answers.result import ALL_FIELDS, LEDGER_READ, Status
from runner.backends.base import BackendReader, IndexEntry, RemoteJob
from runner.errors import BackendError, error
from runner.lazy import lazy_module
from runner.ledger.rules import LedgerState, RowClass, RowFacts, classify, ledger_entries
from runner.project.files import display_path
from runner.rendering.row import RenderedRow
from runner.rendering.stream import render_rows
from runner.rows.idfilter import IdFilter
from runner.rows.linefp import is_line_fp
from runner.rows.records import AnsweredIn, RowIssue, SourceRow, Unchanged
from runner.spec import Manifest, Settings

if TYPE_CHECKING:
    from runner.answers import collect
    from runner.answers.spool import ResultSpool
else:  # the answers' side (parsing, schemas) loads when a job is read, not to render
    collect = lazy_module("runner.answers.collect")


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
    # This spec, still running, answered by someone the backend no longer asks (another executor)
    running_other: list[RemoteJob] = field(default_factory=list)
    answerer: str = ""  # who answers now (BackendReader.answerer)
    table_drift: bool = False  # the table lacks a passthrough column: every row is reshaped
    # Answers of this spec made by another answerer (local echo, before vertex): to do again
    other_answerers: Counter[str] = field(default_factory=Counter)
    traced: set[int] = field(default_factory=set)  # their row keys: a job's answers did land
    # Running, but which rows or spec is not known (a damaged record): nothing is sent or
    # cancelled for the manifest until the user has looked.
    unknown: list[RemoteJob] = field(default_factory=list)
    answered: int = 0  # succeeded destination rows with usage, for the output-token estimate
    output_tokens: int = 0
    # Rows answered under another spec with the request they would be sent now: reshaped, unpaid.
    reshapable: set[int] = field(default_factory=set)
    # Part of reshapable: answered under this spec, but its passthrough columns are not the asked.
    refresh: set[int] = field(default_factory=set)
    # Fingerprints of source rows answered under this spec: such a row is done without rendering.
    answered_fps: set[str] = field(default_factory=set)
    # on_change: forward — fingerprints of rows answered under an older spec, not asked to re-run:
    # an unedited row keeps that answer.
    kept_fps: set[str] = field(default_factory=set)
    # How many of those two hash a JSONL row's values (an older batchrun's, or forward's) and how
    # many its line (rerun's): a row unknown by its own kind is looked up by the other too (and
    # its fingerprint refreshed).
    legacy_fps: int = 0
    line_fps: int = 0

    def other_kind(self, manifest: Manifest) -> bool:
        """Whether some stored JSONL fingerprints are not of the kind this manifest computes."""
        return bool(self.line_fps if manifest.on_change == "forward" else self.legacy_fps)
    # Source rows the source itself recognised as answered (BigQuery, by an anti-join): never
    # read here, done.
    unchanged: int = 0
    pushed: bool = False  # the destination was read beside the source: only rows it does not settle
    ids: IdFilter | None = None  # its ids, read when some job waits to be collected
    # Ids (hashed) whose stored answer is an older spec's, and those specs: a row to do among
    # them is a re-run because the spec changed, not a new row (the plan's `~`).
    older_ids: set[int] = field(default_factory=set)
    older_specs: Counter[str] = field(default_factory=Counter)

    def has_trace(self, custom_id: str, request_hash: str) -> bool:
        """Whether this row under this request has an answer or a recorded refusal."""
        key = row_key(custom_id, request_hash)
        return (key in self.answered_keys or key in self.failures or key in self.pending
                or key in self.traced)

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
            reshapable=key in self.reshapable,
        )
        return facts, stored


def read_ledger(manifest: Manifest, reader: BackendReader, jobs: Sequence[RemoteJob],
                settings: Settings | None = None, results: ResultSpool | None = None) -> Ledger:
    """One read of the destination (its ledger columns) and the jobs' records. When some job
    waits to be collected, the destination's ids are kept too, so collect need not read it again.
    A refusal that names a field of the manifest is placed there (`settings`: the project's root,
    for the file's name). With `results`, the result rows of the jobs waiting to be collected are
    kept there as they are read, so apply's collect does not parse their outputs again."""
    ledger = Ledger(manifest.spec_hash)
    spec_hash = manifest.spec_hash
    current = ledger.answerer = reader.answerer(manifest.model.resource)
    collected = reader.collected_jobs(manifest.destination)
    columns = reader.destination_columns(manifest.destination)
    passthrough = frozenset(manifest.passthrough)
    # A table without a passthrough column the manifest asks for: every stored row lacks it.
    table_drift = ledger.table_drift = columns is not None and not passthrough <= columns
    answered = answered_in(manifest, current)
    # "": a damaged job record, anyone's; another spec's preview is nobody's until it is applied
    mine = [j for j in jobs if j.manifest_name in (manifest.name, "") and j.belongs_to(spec_hash)]
    uncollected = [j for j in mine if not j.state.in_flight and j.name not in collected]
    ids = ledger.ids = IdFilter() if uncollected else None
    # Collect needs every id, and failures_of every answer of rows staged twice; else, where the
    # source lives beside the destination, rows answered for an unchanged source row stay there
    # (and read_source leaves that row there).
    digests = [j.input_digest for j in mine if j.state.finished and j.spec_hash == spec_hash]
    whole = ids is not None or len(digests) != len(set(digests)) or table_drift
    try:
        pushed = None if whole or answered is None else reader.read_ledger(
            manifest.destination, LEDGER_READ, manifest.source, answered)
        ledger.pushed = pushed is not None
        if pushed is not None:
            ledger.answered, ledger.output_tokens = pushed.answered, pushed.output_tokens
        rows = pushed.rows if pushed is not None else reader.read_destination(
            manifest.destination, LEDGER_READ)
        _take_rows(ledger, manifest, rows, _RowContext(
            current, {j.name: j.answered_by for j in jobs if j.answered_by}, columns, table_drift,
            pushed is not None))
    except BackendError as exc:
        place(manifest, settings, exc)
        raise
    _take_jobs(ledger, manifest, reader, mine, uncollected, results)
    return ledger


@dataclass(frozen=True, slots=True)
class _RowContext:
    """What judging a stored row needs beside the manifest."""

    answerer: str  # who answers now
    job_answerers: dict[str, str]  # who ran each known job: tells who made a row of before
    columns: frozenset[str] | None  # a table's columns; None: each row's keys tell
    table_drift: bool  # the table lacks a passthrough column asked for
    pushed: bool  # the ledger was read beside its source, with its totals


def _take_rows(ledger: Ledger, manifest: Manifest, rows: Iterable[dict[str, Any]],
               ctx: _RowContext) -> None:
    """The destination's rows into the ledger. An answer counts for the current spec only when
    the current answerer made it (identity.same_answerer) and it carries the manifest's
    passthrough columns; one that lacks only those is reshaped from its source row, free."""
    spec_hash = manifest.spec_hash
    forward = manifest.on_change == "forward"
    passthrough = frozenset(manifest.passthrough)
    ids = ledger.ids
    for row in rows:
        custom_id = str(row.get("custom_id"))
        if ids is not None:
            ids.check_and_add(custom_id)
        fp = row.get("source_fp")
        key = row_key(custom_id, str(row.get("request_hash")))
        counts = True  # whether the row's answer stands for the current spec and answerer
        if row.get("status") == Status.SUCCEEDED:
            job = row.get("job")
            ours = identity.same_answerer(row.get("answered_by"), job, ctx.answerer,
                                          ctx.job_answerers.get(str(job)))
            if row.get("spec_hash") == spec_hash:
                if not ours:
                    counts = False
                    ledger.other_answerers[identity.answerer_of(row)] += 1
                    ledger.traced.add(key)  # a job's answer reached the destination: progress
                elif ctx.table_drift or (ctx.columns is None and _drifted(row, passthrough)):
                    counts = False
                    ledger.reshapable.add(key)
                    ledger.refresh.add(key)
                elif fp:
                    ledger.answered_fps.add(fp)
                    _count_kind(ledger, fp)
            else:
                if not forward or rerun_asked(row, spec_hash):  # forward keeps it unless asked
                    ledger.older_ids.add(hash(custom_id))
                    ledger.older_specs[str(row.get("spec_hash"))] += 1
                if ours and row.get("model") == manifest.model.short:
                    ledger.reshapable.add(key)
                if forward and ours and fp and not rerun_asked(row, spec_hash):
                    ledger.kept_fps.add(fp)
                    _count_kind(ledger, fp)
        for hashed, state in ledger_entries(row, spec_hash):
            if state.answered:
                if counts:
                    ledger.answered_keys.add(row_key(custom_id, hashed))
            else:
                ledger.failures[row_key(custom_id, hashed)] = (state.failures, state.last_error)
        usage = row.get("usage")
        if not ctx.pushed and row.get("status") == Status.SUCCEEDED and isinstance(usage, dict):
            ledger.answered += 1
            ledger.output_tokens += int(usage.get("output_tokens") or 0)


def _count_kind(ledger: Ledger, fp: str) -> None:
    if is_line_fp(fp):
        ledger.line_fps += 1
    else:
        ledger.legacy_fps += 1


def _take_jobs(ledger: Ledger, manifest: Manifest, reader: BackendReader,
               mine: Sequence[RemoteJob], uncollected: Sequence[RemoteJob],
               results: ResultSpool | None) -> None:
    """The manifest's jobs into the ledger: rows in flight, answers waiting to be collected."""
    current = ledger.answerer
    for job in mine:
        if job.state.in_flight:
            if not job.spec_hash or not job.input_digest:
                ledger.unknown.append(job)
            elif job.spec_hash != manifest.spec_hash:
                ledger.running_stale.append(job)
            elif job.answered_by and job.answered_by != current:
                ledger.running_other.append(job)  # its answers would not count: cancel it
            else:
                for entry in reader.read_index(job):
                    ledger.in_flight.add(row_key(entry.custom_id, entry.request_hash))
    for job in uncollected:
        ledger.to_collect.append(job)
        if job.spec_hash == manifest.spec_hash and (
                not job.answered_by or job.answered_by == current):
            rows = job_results(manifest, reader, job, tally := collect.Tally())
            for result in rows if results is None else results.keep(job.name, rows, tally):
                key = row_key(result["custom_id"], result["request_hash"])
                ok = result["status"] == Status.SUCCEEDED
                if ok or not ledger.pending.get(key, (False, None))[0]:
                    ledger.pending[key] = (ok, result["error"])


def _drifted(row: Mapping[str, Any], passthrough: frozenset[str]) -> bool:
    """Whether a stored row's passthrough columns differ from the manifest's (one was added or
    removed): the row is reshaped from its source row, nothing is sent."""
    return {k for k in row if k not in ALL_FIELDS} != passthrough


def job_results(manifest: Manifest, reader: BackendReader, job: RemoteJob,
                tally: collect.Tally | None = None) -> Iterator[dict[str, Any]]:
    """The answers and refusals a finished job wrote, whatever state it ended in: a failed, expired
    or cancelled job's output is read too, since what it answered was paid for."""
    return collect.result_rows(
        manifest, job_name=job.name, job_spec_hash=job.spec_hash,
        finished_at=job.end_time or job.create_time or "",
        index=reader.read_index(job), output=reader.read_output(job), tally=tally,
        model=identity.short_model(job.model), answered_by=job.answered_by)


def _source_rows(manifest: Manifest, reader: BackendReader, settings: Settings,
                 ledger: Ledger | None = None) -> Iterator[SourceRow | RowIssue]:
    """The source's rows; a source the backend refuses (a query that would write, a file that is
    gone) is reported against the manifest that names it. With the ledger, the backend may leave
    the rows the destination answered under this spec where they are, counted in the ledger."""
    answered = answered_in(manifest, ledger.answerer) if ledger is not None and not (
        ledger.table_drift) else None
    left = False  # whether the source left the answered rows where they are
    try:
        for item in reader.read_source(manifest.source, answered):
            if type(item) is Unchanged:
                assert ledger is not None
                ledger.unchanged += item.count
                left = True
            else:
                yield item  # type: ignore[misc]
        if ledger is not None and ledger.pushed and not left:
            # The ledger left answers in BigQuery for rows this read then brought here: they
            # would look unanswered. Only a destination changed mid-plan does that.
            raise BackendError([error(
                f"{manifest.destination.location} changed while the plan read it",
                hint="run the plan again")])
    except BackendError as exc:
        source = manifest.source
        key = ("query" if source.is_query else "table") if source.kind.value == "bigquery" \
            else source.kind.value
        path = f"spec.source.{source.kind.value}" + (
            f".{key}" if source.kind.value == "bigquery" else "")
        place(manifest, settings, exc, path)
        raise


def place(manifest: Manifest, settings: Settings | None, exc: BackendError,
          default: str | None = None) -> None:
    """A backend's refusal placed in the manifest, in place (it stays what it is, a Foreign-
    DestinationError say): a diagnostic that names a field of it (the id column a BigQuery name
    rule refused) at that field's line; with `default`, one that names none at that field. One
    already placed, or that names no field, stays as it is."""
    shown = display_path(manifest.file, settings.root if settings else Path.cwd())
    placed = []
    for d in exc.diagnostics:
        path = d.path or default
        placed.append(d if d.file is not None or path is None else replace(
            d, file=shown, path=path,
            line=manifest.lines.get(path) or manifest.source.line or manifest.line))
    exc.diagnostics = tuple(placed)


def rendered_rows(manifest: Manifest, reader: BackendReader, settings: Settings,
                  known: Callable[[str], bool] | None = None,
                  ledger: Ledger | None = None, *,
                  fingerprints: bool = True) -> Iterator[RenderedRow]:
    """The source's rows rendered; with `known`, rows whose fingerprint it knows are yielded
    unrendered (skipped); with the ledger, rows the source recognised as answered are only
    counted there (Ledger.unchanged)."""
    return render_rows(manifest, _source_rows(manifest, reader, settings, ledger), known=known,
                       fingerprints=fingerprints,
                       alternate=ledger is not None and ledger.other_kind(manifest),
                       max_request_bytes=settings.quota.request_bytes(manifest.family),
                       source_name=display_path_of(manifest, settings),
                       max_id_chars=settings.quota.max_id_chars,
                       reread=lambda: _source_rows(manifest, reader, settings),
                       manifest_file=display_path(manifest.file, settings.root))


def index_entry(manifest: Manifest, row: RenderedRow) -> IndexEntry:
    """What batchrun records beside a staged row: its id, request, passthrough values, size and
    source fingerprint (collect reads them back with the answer)."""
    return IndexEntry(custom_id=row.custom_id, request_hash=row.request_hash,
                      passthrough={k: row.row.data.get(k) for k in manifest.passthrough},
                      input_chars=len(row.line), source_fp=row.source_fp)


def answered_in(manifest: Manifest, answerer: str) -> AnsweredIn | None:
    """What a source needs to leave the answered rows where they are. Not under on_change:
    forward, which keeps older specs' answers too, told by fingerprint here."""
    if manifest.on_change == "forward":
        return None
    return AnsweredIn(manifest.destination.location, manifest.destination.kind.value,
                      manifest.spec_hash, manifest.source.id_column, answerer,
                      tuple(manifest.passthrough), manifest.source.id_hash,
                      manifest.source.max_id_chars)


def display_path_of(manifest: Manifest, settings: Settings) -> str:
    if manifest.source.kind.value == "file":
        return display_path(Path(manifest.source.location), settings.root)
    return manifest.source.location


ANSWERED = LedgerState(True, 0, None)


def rerun_asked(row: dict[str, Any], spec_hash: str) -> bool:
    """`batchrun retry --older-specs` marked this older answer to be re-run under `spec_hash`."""
    retry = row.get("retry")
    return isinstance(retry, dict) and retry.get("spec_hash") == spec_hash


def classified_rows(manifest: Manifest, reader: BackendReader, settings: Settings,
                    ledger: Ledger, *, fingerprints: bool = True
                    ) -> Iterator[tuple[RenderedRow, RowClass, LedgerState]]:
    """Every source row with its class, but those the source recognised as answered (counted in
    `ledger.unchanged`, done); `fingerprints=False` renders every row (the property test compares
    the two)."""
    fps = ledger.answered_fps | ledger.kept_fps if ledger.kept_fps else ledger.answered_fps
    known = fps.__contains__ if fps and fingerprints else None
    for row in rendered_rows(manifest, reader, settings, known, ledger):
        if row.skipped:  # answered under this spec, recognised by its fingerprint alone
            yield row, RowClass.DONE, ANSWERED
            continue
        facts, stored = ledger.facts(row, manifest.max_attempts)
        kind = classify(facts)
        # Answered, by its request, though its fingerprint was not known: the row gained a column,
        # or its answer was stored by an older batchrun. Refreshed, the next plan skips it.
        row.refresh = kind is RowClass.DONE and stored.answered and fingerprints
        yield row, kind, stored

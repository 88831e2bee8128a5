"""`batchrun preview`: the changed spec run on a sample of rows answered under an older one, in one
small job labelled a preview, then the old answers beside the new. It writes only that job (through
apply's Writer); its
answers are the new spec's, collected by apply once that spec is the manifest's (never by another
spec's apply), so a row previewed is never paid for twice."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from runner import identity
from runner.answers.compare import OverBudget, Pair, Preview, PreviewState, compare
from runner.answers.result import Status
from runner.applying.executor import job_request
from runner.applying.writer import Writer
from runner.backends.base import BackendReader, RemoteJob
from runner.estimate import Tally, approx_tokens, price_for
from runner.identity import PREVIEW_LABEL
from runner.ledger.rowpass import (
    Ledger,
    classified_rows,
    index_entry,
    job_results,
    read_ledger,
    rendered_rows,
    row_key,
)
from runner.ledger.rules import RowClass
from runner.planning.builder import cost_estimate
from runner.preview.sample import sample
from runner.rendering.row import RenderedRow
from runner.spec import Manifest, Settings

ANSWER_COLUMNS = ("custom_id", "status", "spec_hash", "output")


def older_answers(manifest: Manifest, backend: BackendReader) -> tuple[dict[str, Any], bool]:
    """id -> answer, for the destination's rows answered under another spec than the manifest's;
    and whether the destination holds any row at all (a manifest never applied holds none)."""
    old, stored = {}, False
    for row in backend.read_destination(manifest.destination, ANSWER_COLUMNS):
        stored = True
        if row.get("status") == Status.SUCCEEDED and row.get("spec_hash") != manifest.spec_hash:
            old[str(row["custom_id"])] = row.get("output")
    return old, stored


def _sample_rows(manifest: Manifest, backend: BackendReader, settings: Settings, ledger: Ledger,
                 old: dict[str, Any], n: int) -> list[RenderedRow]:
    """The sample's rows rendered under the new spec, in the sample's order: ids answered before,
    still in the source, whose request changed (a row whose request is the same is reshaped from
    its answer, free: nothing to see). Two passes: ids first, then only those rendered."""
    present = {row.custom_id for row in rendered_rows(manifest, backend, settings)
               if row_key(row.custom_id, row.request_hash) not in ledger.reshapable}
    chosen = sample({i: a for i, a in old.items() if i in present}, n)
    rank = {custom_id: k for k, custom_id in enumerate(chosen)}
    rows = [row for row in rendered_rows(manifest, backend, settings) if row.custom_id in rank]
    return sorted(rows, key=lambda r: rank[r.custom_id])


def _first_rows(manifest: Manifest, backend: BackendReader, settings: Settings, ledger: Ledger,
                n: int) -> list[RenderedRow]:
    """A manifest never applied (its destination holds nothing): a sample of the rows apply
    would send, or that an earlier first look is answering or answered (the same ones each time,
    so a second look reuses the first's answers)."""
    waiting = set()
    for row, kind, _ in classified_rows(manifest, backend, settings, ledger):
        key = row_key(row.custom_id, row.request_hash)
        if kind in (RowClass.TO_DO, RowClass.IN_FLIGHT) or ledger.pending.get(key, (False,))[0]:
            waiting.add(row.custom_id)
    rank = {custom_id: k for k, custom_id in enumerate(sample(dict.fromkeys(waiting), n))}
    rows = [row for row in rendered_rows(manifest, backend, settings) if row.custom_id in rank]
    return sorted(rows, key=lambda r: rank[r.custom_id])


def _wait(backend: BackendReader, jobs: list[RemoteJob], timeout: float,
          poll: float) -> list[RemoteJob]:
    deadline = time.monotonic() + timeout
    pause = 0.2  # a small job often ends in seconds: look again soon, then every `poll`
    while any(j.state.in_flight for j in jobs) and time.monotonic() < deadline:
        time.sleep(min(pause, poll, max(0.0, deadline - time.monotonic())))
        pause *= 2
        jobs = [backend.get_job(j.name) if j.state.in_flight else j for j in jobs]
    return jobs


def _create(manifest: Manifest, writer: Writer, rows: list[RenderedRow]) -> RemoteJob:
    staged = writer.stage_rows(manifest.name, ((r.line, index_entry(manifest, r)) for r in rows))
    labels = identity.job_labels(manifest, input_digest=staged.digest, shard=0)
    labels[PREVIEW_LABEL] = "true"
    return writer.create(job_request(
        manifest, staged, f"batchrun-preview-{manifest.name}-{manifest.spec_hash[:8]}"[:128],
        labels))


def _new_answers(manifest: Manifest, backend: BackendReader,
                 jobs: list[RemoteJob]) -> Iterator[dict[str, Any]]:
    for job in jobs:
        if job.state.finished:
            yield from job_results(manifest, backend, job)


@dataclass
class _Prepared:
    """One manifest's preview, decided under its locks: the sample, what it would send, the cost."""

    manifest: Manifest
    base: Preview
    old: dict[str, Any] = field(default_factory=dict)
    rows: list[RenderedRow] = field(default_factory=list)
    jobs: list[RemoteJob] = field(default_factory=list)
    to_send: list[RenderedRow] = field(default_factory=list)
    refusals: dict[str, str | None] = field(default_factory=dict)  # known refused under the spec

    @property
    def sampled(self) -> bool:
        return bool(self.old or self.base.first)


def _prepare(manifest: Manifest, backend: BackendReader, settings: Settings, n: int,
             first_look: bool) -> _Prepared:
    base = Preview(manifest.name, manifest.spec_hash, PreviewState.NOTHING, n)
    jobs = backend.list_jobs(manifest.name)
    ledger = read_ledger(manifest, backend, jobs, settings)
    old, stored = older_answers(manifest, backend)
    if not stored and first_look:  # never applied: a first look at the answers it would get
        rows = _first_rows(manifest, backend, settings, ledger, n)
        base = replace(base, first=bool(rows))
    elif not old:
        return _Prepared(manifest, base)
    else:
        rows = _sample_rows(manifest, backend, settings, ledger, old, n)
    if not rows:  # every older answer's request is unchanged (reshaped, free): nothing to see
        return _Prepared(manifest, base)
    mine = [j for j in jobs if j.spec_hash == manifest.spec_hash and (
        j.state.in_flight or j in ledger.to_collect)]
    to_send, refusals = [], {}
    for row in rows:
        key = row_key(row.custom_id, row.request_hash)
        if key in ledger.in_flight or ledger.pending.get(key, (False, None))[0]:
            continue  # answered, or being answered, by an earlier preview of this spec
        if key in ledger.pending or key in ledger.failures:
            # Refused under this spec already: shown as refused, not paid for again (apply
            # retries it within max_attempts when the change is applied).
            refusals[row.custom_id] = (ledger.pending.get(key) or ledger.failures[key])[1]
            continue
        to_send.append(row)
    tally = Tally(price_for(manifest.model, settings.pricing))
    for row in to_send:
        tally.add(approx_tokens(row.prompt_chars))
    estimate = cost_estimate(manifest, ledger, tally)
    base = replace(base, sampled=len(rows), reused=len(rows) - len(to_send), estimate=estimate)
    return _Prepared(manifest, base, old, rows, mine, to_send, refusals)


def _over_budget(prepared: list[_Prepared], settings: Settings) -> OverBudget | None:
    """Which budget forbids sending: a manifest's max_cost, or the project's over all previews."""
    for p in prepared:
        e = p.base.estimate
        if e.over_budget:
            return OverBudget(p.manifest.name, e.cost, e.max_cost or 0.0)
    costs = [p.base.estimate.cost for p in prepared if p.to_send]
    if settings.max_cost is not None and costs and (
            None in costs or sum(c or 0.0 for c in costs) > settings.max_cost):
        total = None if None in costs else sum(c or 0.0 for c in costs)
        return OverBudget(None, total, settings.max_cost)
    return None


def previews(manifests: list[Manifest], writer: Writer, settings: Settings, n: int, *,
             timeout: float = 3600, poll: float = 5.0, first_look: bool = False) -> list[Preview]:
    """Run (or reuse) a preview of `n` rows per manifest and compare. Rows an earlier preview of
    this spec answered, refused or is answering are not sent again. Budgets are checked over
    all of them before any is sent: a manifest's max_cost, and the project's over the total.
    With `first_look`, a manifest with no older answers runs `n` of its rows not answered yet,
    to be shown on their own (`batchrun preview` of a new manifest)."""
    backend = writer.reader
    with contextlib.ExitStack() as stack:
        prepared = []
        for manifest in sorted(manifests, key=lambda m: m.name):
            # Apply sends none of these rows while the preview decides and creates its job.
            stack.enter_context(writer.locked(manifest))
            prepared.append(_prepare(manifest, backend, settings, n, first_look))
        refused = _over_budget(prepared, settings)
        if refused is not None:
            return [replace(p.base, state=PreviewState.OVER_BUDGET, over_budget=refused)
                    if p.sampled else p.base for p in prepared]
        for p in prepared:
            if p.to_send:
                p.jobs.append(_create(p.manifest, writer, p.to_send))
    waited = _wait(backend, [j for p in prepared for j in p.jobs], timeout, poll)
    by_name = {j.name: j for j in waited}
    return [_finish(replace(p, jobs=[by_name[j.name] for j in p.jobs]), backend) if p.sampled
            else p.base for p in prepared]


def _finish(p: _Prepared, backend: BackendReader) -> Preview:
    base = replace(p.base, sent=len(p.to_send), jobs=tuple(
        j.name for j in p.jobs if j.state.in_flight) or tuple(j.name for j in p.jobs))
    if any(j.state.in_flight for j in p.jobs):
        return replace(base, state=PreviewState.RUNNING)
    new: dict[str, dict[str, Any]] = {}
    for result in _new_answers(p.manifest, backend, p.jobs):
        if result["status"] == Status.SUCCEEDED or result["custom_id"] not in new:
            new[result["custom_id"]] = result
    pairs = []
    for r in p.rows:
        got = new.get(r.custom_id, {})
        ok = got.get("status") == Status.SUCCEEDED
        pairs.append(Pair(r.custom_id, p.old.get(r.custom_id), got["output"] if ok else None,
                          None if ok else got.get("error") or p.refusals.get(r.custom_id)
                          or "no answer"))
    comparison = compare(pairs)
    if p.rows and not comparison.rows:
        failed = next((j.error_message for j in p.jobs if j.error_message), None)
        reason = failed or (comparison.refusals[0][1] if comparison.refusals else "no answer")
        return replace(base, state=PreviewState.FAILED, comparison=comparison, error=reason)
    return replace(base, state=PreviewState.DONE, comparison=comparison)

"""`batchrun preview`: the changed spec run on a sample of rows answered under an older one, in one
small job labelled a preview, then the old answers beside the new. It writes only that job; its
answers are the new spec's, collected by apply once that spec is the manifest's (never by another
spec's apply), so a row previewed is never paid for twice."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from runner import identity
from runner.apply import job_request, locked
from runner.backends.base import Backend, IndexEntry, RemoteJob
from runner.compare import Pair, Preview, PreviewState, compare
from runner.estimate import approx_tokens
from runner.identity import PREVIEW_LABEL
from runner.ledger import Ledger, job_results, read_ledger, rendered_rows, row_key
from runner.planner import cost_estimate
from runner.render import RenderedRow
from runner.result import Status
from runner.sample import sample
from runner.spec import Manifest, Settings

ANSWER_COLUMNS = ("custom_id", "status", "spec_hash", "output")


def older_answers(manifest: Manifest, backend: Backend) -> dict[str, Any]:
    """id -> answer, for the destination's rows answered under another spec than the manifest's."""
    return {str(row["custom_id"]): row.get("output")
            for row in backend.read_destination(manifest.destination, ANSWER_COLUMNS)
            if row.get("status") == Status.SUCCEEDED
            and row.get("spec_hash") != manifest.spec_hash}


def _sample_rows(manifest: Manifest, backend: Backend, settings: Settings, ledger: Ledger,
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


def _wait(backend: Backend, jobs: list[RemoteJob], timeout: float,
          poll: float) -> list[RemoteJob]:
    deadline = time.monotonic() + timeout
    pause = 0.2  # a small job often ends in seconds: look again soon, then every `poll`
    while any(j.state.in_flight for j in jobs) and time.monotonic() < deadline:
        time.sleep(min(pause, poll, max(0.0, deadline - time.monotonic())))
        pause *= 2
        jobs = [backend.get_job(j.name) if j.state.in_flight else j for j in jobs]
    return jobs


def _create(manifest: Manifest, backend: Backend, rows: list[RenderedRow]) -> RemoteJob:
    staged = backend.stage(manifest.name, ((r.line, IndexEntry(
        custom_id=r.custom_id, request_hash=r.request_hash,
        passthrough={k: r.row.data.get(k) for k in manifest.passthrough},
        input_chars=len(r.line), source_fp=r.source_fp)) for r in rows))
    labels = identity.job_labels(manifest, input_digest=staged.digest, shard=0)
    labels[PREVIEW_LABEL] = "true"
    return backend.create_job(job_request(
        manifest, staged, f"batchrun-preview-{manifest.name}-{manifest.spec_hash[:8]}"[:128],
        labels))


def _new_answers(manifest: Manifest, backend: Backend,
                 jobs: list[RemoteJob]) -> Iterator[dict[str, Any]]:
    for job in jobs:
        if job.state.finished:
            yield from job_results(manifest, backend, job)


def preview(manifest: Manifest, backend: Backend, settings: Settings, n: int, *,
            timeout: float = 3600, poll: float = 5.0, max_cost: float | None = None) -> Preview:
    """Run (or reuse) the preview of `n` rows and compare. Rows an earlier preview of this spec
    answered or is answering are not sent again; a preview that would pass the manifest's
    max_cost (or `max_cost`, the project's) sends nothing."""
    base = Preview(manifest.name, manifest.spec_hash, PreviewState.NOTHING, n)
    with locked(backend, manifest):  # apply sends none of these rows while the preview does
        jobs = backend.list_jobs(manifest.name)
        ledger = read_ledger(manifest, backend, jobs)
        old = older_answers(manifest, backend)
        if not old:
            return base
        rows = _sample_rows(manifest, backend, settings, ledger, old, n)
        mine = [j for j in jobs if j.spec_hash == manifest.spec_hash and (
            j.state.in_flight or j in ledger.to_collect)]
        to_send = [r for r in rows if not _known(ledger, r)]
        estimate = cost_estimate(manifest, settings, ledger, len(to_send),
                                 sum(approx_tokens(r.prompt_chars) for r in to_send))
        over = estimate.over_budget or (max_cost is not None and bool(to_send) and (
            estimate.cost is None or estimate.cost > max_cost))
        base = replace(base, sampled=len(rows), reused=len(rows) - len(to_send),
                       estimate=estimate)
        if over:
            return replace(base, state=PreviewState.OVER_BUDGET,
                           estimate=replace(estimate, over_budget=True,
                                            max_cost=estimate.max_cost or max_cost))
        if to_send:
            mine.append(_create(manifest, backend, to_send))
    mine = _wait(backend, mine, timeout, poll)
    base = replace(base, sent=len(to_send), jobs=tuple(j.name for j in mine))
    if any(j.state.in_flight for j in mine):
        return replace(base, state=PreviewState.RUNNING)
    new: dict[str, dict[str, Any]] = {}
    for result in _new_answers(manifest, backend, mine):
        if result["status"] == Status.SUCCEEDED or result["custom_id"] not in new:
            new[result["custom_id"]] = result
    pairs = [Pair(r.custom_id, old[r.custom_id],
                  new[r.custom_id]["output"] if new.get(r.custom_id, {}).get("status")
                  == Status.SUCCEEDED else None,
                  new.get(r.custom_id, {}).get("error")) for r in rows]
    if rows and not any(p.new is not None for p in pairs):
        failed = next((j for j in mine if j.error_message), None)
        return replace(base, state=PreviewState.FAILED, comparison=compare(pairs),
                       error=failed.error_message if failed else "no row was answered")
    return replace(base, state=PreviewState.DONE, comparison=compare(pairs))


def _known(ledger: Ledger, row: RenderedRow) -> bool:
    """Answered by a finished preview of this spec, or staged in a running one."""
    key = row_key(row.custom_id, row.request_hash)
    return ledger.pending.get(key, (False, None))[0] or key in ledger.in_flight

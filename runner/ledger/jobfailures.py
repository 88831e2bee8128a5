"""A manifest's job-level failures, read from its finished jobs and judged by streak's rules:
when creates may resume, or that they are blocked. Reads only."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from runner.backends.base import BackendReader, RemoteJob
from runner.ledger.rowpass import Ledger
from runner.ledger.streak import FailurePolicy, JobEnd, JobFailures, job_failures
from runner.spec import Manifest, Settings


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
    ended = [j for j in jobs if j.manifest_name == manifest.name and j.state.finished
             and j.belongs_to(manifest.spec_hash)]
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

"""Job-level failures of a manifest's current spec, pure: back off after each, block after a
streak (or at once where a resend may pay again for nothing). Reads jobs' ends; never a row."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from runner.answers.fault import Fault, fault_of
from runner.rpc import Code

JOB_FAILURE_STATES: Final = frozenset({"failed", "expired"})  # a cancel is deliberate: not counted


@dataclass(frozen=True, slots=True)
class JobEnd:
    """A finished job of the current spec, as the failure rules need it."""

    name: str
    input_digest: str  # the same rows staged again have the same digest
    state: str  # short state: succeeded, partially_succeeded, failed, expired, cancelled
    created: str
    ended: datetime | None
    code: int | None
    message: str | None
    # For a job that ended well: whether any of its rows now has an answer or a refusal in the
    # destination. False means the same rows come back with nothing recorded: no progress.
    left_trace: bool = True

    @property
    def job_failure(self) -> bool:
        return self.state in JOB_FAILURE_STATES or not self.left_trace

    @property
    def error_text(self) -> str:
        if not self.left_trace and self.state not in JOB_FAILURE_STATES:
            return ("the job ended but none of its rows' answers or refusals reached the "
                    "destination (every row met a 429/5xx, or the destination does not record "
                    "them), so the same rows would be sent and paid for again")
        text = self.message or f"job {self.state}"
        return f"{text} (code {self.code})" if self.code is not None else text


@dataclass(frozen=True, slots=True)
class FailurePolicy:
    max_job_failures: int = 3
    backoff: float = 60.0  # seconds after the first job-level failure, doubling
    backoff_max: float = 3600.0
    internal_delay: float = 600.0  # Vertex: resubmit a region's failed first job after ~10 min


@dataclass(frozen=True, slots=True)
class JobFailures:
    """What the job-level failures of a manifest's current spec mean for its next create."""

    streak: int = 0  # the longest run of job-level failures of the same rows, none answered
    last: JobEnd | None = None  # the newest job-level failure in that run
    blocked: bool = False
    auth: bool = False  # credentials were refused
    imported: bool = False  # the importer refused the input (import_failure)
    hold_until: datetime | None = None  # creates wait until then (backoff)


# Job errors after which the endpoint may have answered, and billed, a request batchrun gave up on:
# one that timed out (no complete answer within the executor's timeout, a trickle included) and
# one whose answer ran past max_response_bytes (an endless body). Sending either again may pay
# again for the same nothing, so neither waits for a streak. A redirect (NOT_FOUND) or a down
# endpoint was paid nothing: those back off and block after max_job_failures.
# An answer in another API's shape (FAILED_PRECONDITION: base_url names the wrong kind of
# endpoint) was answered, maybe billed, and is unusable for every row alike: it blocks at once too.
_PAID_FOR_NOTHING: Final = frozenset({Code.DEADLINE_EXCEEDED, Code.OUT_OF_RANGE,
                                      Code.FAILED_PRECONDITION})


def import_failure(job: JobEnd) -> bool:
    """Vertex's batch importer refused the staged input before any row ran (code 3, "Failed to
    import data", Gemini reference §2.4): the manifest's doing, and the same rows staged again
    fail the same way, so no resubmission can help."""
    return job.job_failure and job.code == Code.INVALID_ARGUMENT and (
        "failed to import data" in (job.message or "").lower())


def _at_once(job: JobEnd) -> bool:
    """Failures that block at once: refused credentials or account, a request the endpoint may
    have answered and billed though batchrun could not use the answer (sending it again may pay
    twice), or an input the importer refused (it would be refused again)."""
    return job.job_failure and (job.code in _PAID_FOR_NOTHING or import_failure(job)
                                or fault_of(job.code, job.message or "") is Fault.AUTH)


def job_failures(jobs: Iterable[JobEnd], policy: FailurePolicy, forgiven: frozenset[str],
                 now: datetime, other_specs: Iterable[JobEnd] = ()) -> JobFailures:
    """Per staged input (the same rows sent again), the trailing run of job-level failures: a job
    that answered anything (success or the row's own failure) ends the run. Blocked after
    `max_job_failures` in a run; at once when the manifest's newest job, of any spec, had its
    credentials refused, timed out or ran past max_response_bytes. Creates back off after the
    newest job of the spec when it failed."""
    mine = sorted((j for j in jobs if j.name not in forgiven), key=lambda j: j.created)
    by_digest: dict[str, list[JobEnd]] = {}
    for job in mine:
        by_digest.setdefault(job.input_digest, []).append(job)
    streak, last = 0, None
    for runs in by_digest.values():
        run = 0
        for job in reversed(runs):
            if not job.job_failure:
                break
            run += 1
        if run > streak or (run == streak and run and last is not None
                            and runs[-1].created > last.created):
            streak, last = run, runs[-1]
    everything = [*mine, *(j for j in other_specs if j.name not in forgiven)]
    newest_any = max(everything, key=lambda j: j.created, default=None)
    if newest_any is not None and _at_once(newest_any):
        return JobFailures(max(streak, 1), newest_any, True,
                           fault_of(newest_any.code, newest_any.message or "") is Fault.AUTH,
                           import_failure(newest_any), None)
    newest = mine[-1] if mine else None
    if last is None or newest is None or not newest.job_failure:
        return JobFailures(streak, last, last is not None and streak >= policy.max_job_failures)
    blocked = streak >= policy.max_job_failures
    hold = None
    if not blocked and newest.ended is not None:
        if newest.code == Code.INTERNAL:
            delay = policy.internal_delay
        elif newest.code == Code.ABORTED:
            delay = 0.0  # a crashed machine: resume at once, the streak still guards a loop
        else:
            delay = min(policy.backoff_max, policy.backoff * 2 ** (streak - 1))
        until = newest.ended + timedelta(seconds=delay)
        hold = until if until > now else None
    return JobFailures(streak, newest if newest.job_failure else last, blocked, False,
                       hold_until=hold)

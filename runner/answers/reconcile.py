"""The reconcile rules, pure: one table deciding each source row's class from what is observed.

DESIGN §4: done = answered under the current spec (in the destination, or waiting in a finished
job's output); in flight = staged in a running job of the same spec; to do = the rest, until a row
has failed max_attempts times. A row whose rendered request changed has a new request hash, so
nothing observed matches it and it is to do again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from runner.answers.result import Status
from runner.rpc import Code


class RowClass(StrEnum):
    DONE = "done"
    IN_FLIGHT = "in_flight"
    FAILED = "failed"
    RESHAPE = "reshape"  # the same request was answered under another spec: re-derived, unpaid
    TO_DO = "to_do"


@dataclass(frozen=True, slots=True)
class RowFacts:
    """What is observed about one source row under the current spec hash and request hash."""

    answered: bool = False  # the destination holds a success for this spec + request
    pending_success: bool = False  # a finished, uncollected job of this spec answered it
    in_flight: bool = False  # staged in a queued or running job with this spec + request
    failures: int = 0  # failed attempts for this spec + request (destination + uncollected)
    max_attempts: int = 3
    # Answered under another spec hash with this very request (only how answers are shaped —
    # response parsing, its schema — changed): the stored answer is re-derived, nothing is sent.
    reshapable: bool = False


RULES: Final[tuple[tuple[str, Callable[[RowFacts], bool], RowClass], ...]] = (
    ("answered under the current spec, in the destination", lambda f: f.answered, RowClass.DONE),
    ("answered in a finished job's output, to be collected", lambda f: f.pending_success,
     RowClass.DONE),
    ("staged in a queued or running job of the same spec", lambda f: f.in_flight,
     RowClass.IN_FLIGHT),
    ("failed max_attempts times: reported, not retried", lambda f: f.failures >= f.max_attempts,
     RowClass.FAILED),
    ("the same request answered under another spec, never failed under this one",
     lambda f: f.reshapable and not f.failures, RowClass.RESHAPE),
    ("new, changed, or failed fewer than max_attempts times", lambda f: True, RowClass.TO_DO),
)


def classify(facts: RowFacts) -> RowClass:
    for _, applies, outcome in RULES:
        if applies(facts):
            return outcome
    raise AssertionError("the last rule always applies")


@dataclass(frozen=True, slots=True)
class LedgerState:
    """A destination row read for the current spec and request hash."""

    answered: bool
    failures: int
    last_error: str | None


NOTHING: Final = LedgerState(False, 0, None)


def ledger_entries(row: Mapping[str, Any], spec_hash: str) -> list[tuple[str, LedgerState]]:
    """What a destination row says under the current spec: for which request hash it holds an
    answer, or how often that request failed. A row may speak for two requests: its answer, and
    the failures of a newer request kept beside it as `retry`."""
    out = []
    if row.get("spec_hash") == spec_hash:
        if row.get("status") == Status.SUCCEEDED:
            out.append((str(row.get("request_hash")), LedgerState(True, 0, None)))
        elif row.get("status") == Status.FAILED:
            out.append((str(row.get("request_hash")),
                        LedgerState(False, _attempts(row), row.get("error"))))
    retry = row.get("retry")
    if isinstance(retry, Mapping) and retry.get("spec_hash") == spec_hash:
        out.append((str(retry.get("request_hash")),
                    LedgerState(False, _attempts(retry), retry.get("error"))))
    return out


def _attempts(row: Mapping[str, Any]) -> int:
    """Attempts a failure used; 0 after `batchrun retry --failed` gave it fresh ones."""
    value = row.get("attempts")
    return 1 if value is None or value == "" else int(value)


def ledger_state(row: Mapping[str, Any] | None, spec_hash: str, request_hash: str) -> LedgerState:
    """How a destination row stands for (spec_hash, request_hash): answered, or failed N times."""
    if row is None:
        return NOTHING
    for hashed, state in ledger_entries(row, spec_hash):
        if hashed == request_hash:
            return state
    return NOTHING


# --- whose failure it is --------------------------------------------------------------------------

class Fault(StrEnum):
    """Whose failure an error is: only the row's own uses one of its attempts."""

    ROW = "row"  # the model answered this row with an error: spends an attempt
    INFRA = "infra"  # the job, worker, endpoint or credentials failed: the row is to do again
    AUTH = "auth"  # credentials refused: infrastructure, and it blocks the manifest at once


# HTTP statuses and google.rpc codes (1-16, so the two never collide) that are not about the row.
_AUTH_CODES: Final = frozenset({401, 402, 403, Code.PERMISSION_DENIED, Code.UNAUTHENTICATED})
_INFRA_CODES: Final = frozenset({404, 408, 409, 425, 429, Code.CANCELLED, Code.DEADLINE_EXCEEDED,
                                 Code.RESOURCE_EXHAUSTED, Code.ABORTED, Code.OUT_OF_RANGE,
                                 Code.INTERNAL, Code.UNAVAILABLE})
# Words are read only when a line carries no code: a row's refusal may quote any text of the row.
# Matched without regard to case: "Internal error encountered." and "An internal error has
# occurred." are Google's texts for INTERNAL; "overloaded", "expired" (an OpenAI batch_expired
# row never ran), "deadline", "unavailable", "resource exhausted" and rate limits are the others.
_INFRA_WORDS: Final = ("resource_exhausted", "resource exhausted", "unavailable",
                       "internal error", "internal server error", "deadline_exceeded",
                       "deadline exceeded", "deadline expired", "rate_limit", "rate limit",
                       "overloaded", "quota exceeded", "try again later", "timed out", "timeout",
                       "expired", "endpoint unreachable", "the endpoint sent more than",
                       "batchrun does not follow redirects")
_AUTH_WORDS: Final = ("UNAUTHENTICATED", "PERMISSION_DENIED", "authentication_error",
                      "permission_error")
# The account, not the row, whatever the code: Anthropic answers 400 when the credit runs out.
_ACCOUNT_WORDS: Final = ("credit balance is too low", "billing_error")
# How batchrun itself tells an answer it cannot use (outputs.py, collect.py): the row's, whatever
# the answer quotes (its text may hold any word of the infrastructure list).
OWN_READING: Final = ("the model returned no answer", "answer is not JSON",
                      "answer does not match the response schema", "unexpected output",
                      "unreadable output line", "no answer in the output row",
                      "no choices in the output row", "embedding missing from the output")


def _code_fault(code: int | None) -> Fault | None:
    if code is None:
        return None
    if code in _AUTH_CODES:
        return Fault.AUTH
    if code in _INFRA_CODES or code >= 500:
        return Fault.INFRA
    return Fault.ROW


def _infra_words(text: str) -> bool:
    lowered = text.lower()
    return "INTERNAL" in text or any(w in lowered for w in _INFRA_WORDS)


# The one table: (what was observed, how to tell, whose fault). First match wins; the last always
# applies. Job-level ends (FAILED, EXPIRED, CANCELLED, a dead worker) are never the row's: rows
# without an answer line simply stay to do, so they have no entry here. README "Whose failure".
FAULT_RULES: Final[tuple[tuple[str, Callable[[int | None, str], bool], Fault], ...]] = (
    ("batchrun could not use the answer: empty, unreadable, not JSON or off-schema",
     lambda code, text: code is None and text.startswith(OWN_READING), Fault.ROW),
    ("the account is out of credit or billing refused it, whatever the status",
     lambda code, text: any(w in text for w in _ACCOUNT_WORDS), Fault.AUTH),
    ("credentials refused: 401/402/403, UNAUTHENTICATED, PERMISSION_DENIED",
     lambda code, text: _code_fault(code) is Fault.AUTH
     or (code is None and any(w in text for w in _AUTH_WORDS)), Fault.AUTH),
    # An answer past max_response_bytes (OUT_OF_RANGE) is here, not the row's: the model said
    # nothing about the row that batchrun could read, so no attempt of it is spent; what stops it
    # being paid again and again is that it blocks at once (_at_once), as a timeout does.
    ("endpoint down, slow, over quota, endless, redirecting or failing: 404/408/429/5xx, "
     "unreachable, timed out, past max_response_bytes, INTERNAL, UNAVAILABLE, RESOURCE_EXHAUSTED, "
     "DEADLINE_EXCEEDED, CANCELLED, overloaded, expired before it ran",
     lambda code, text: _code_fault(code) is Fault.INFRA
     or (code is None and _infra_words(text)), Fault.INFRA),
    # An unknown text without a code is the row's: max_attempts bounds what it can cost, where an
    # error that is not the row's is sent again on every apply, without end.
    ("the model refused the request (another 4xx), or an unknown error without a code",
     lambda code, text: True, Fault.ROW),
)


def fault_of(code: int | None, text: str = "") -> Fault:
    """Whose failure an error line is, from its status code (HTTP or google.rpc) and its text."""
    for _, applies, fault in FAULT_RULES:
        if applies(code, text):
            return fault
    raise AssertionError("the last rule always applies")


# --- job-level failures: back off, then block ----------------------------------------------------

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


def _at_once(job: JobEnd) -> bool:
    """Failures that block at once: refused credentials or account, or a request the endpoint
    may have answered and billed though batchrun could not use the answer (sending it again may
    pay twice)."""
    return job.job_failure and (job.code in _PAID_FOR_NOTHING
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
                           fault_of(newest_any.code, newest_any.message or "") is Fault.AUTH, None)
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
    return JobFailures(streak, newest if newest.job_failure else last, blocked, False, hold)

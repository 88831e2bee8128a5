"""The row rules, pure: one table deciding each source row's class from what is observed.

DESIGN §4: done = answered under the current spec (in the destination, or waiting in a finished
job's output); in flight = staged in a running job of the same spec; to do = the rest, until a row
has failed max_attempts times. A row whose rendered request changed has a new request hash, so
nothing observed matches it and it is to do again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from runner.answers.result import Status


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

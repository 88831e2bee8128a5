"""The reconcile rules, pure: one table deciding each source row's class from what is observed.

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


class RowClass(StrEnum):
    DONE = "done"
    IN_FLIGHT = "in_flight"
    FAILED = "failed"
    TO_DO = "to_do"


@dataclass(frozen=True, slots=True)
class RowFacts:
    """What is observed about one source row under the current spec hash and request hash."""

    answered: bool = False  # the destination holds a success for this spec + request
    pending_success: bool = False  # a finished, uncollected job of this spec answered it
    in_flight: bool = False  # staged in a queued or running job with this spec + request
    failures: int = 0  # failed attempts for this spec + request (destination + uncollected)
    max_attempts: int = 3


RULES: Final[tuple[tuple[str, Callable[[RowFacts], bool], RowClass], ...]] = (
    ("answered under the current spec, in the destination", lambda f: f.answered, RowClass.DONE),
    ("answered in a finished job's output, to be collected", lambda f: f.pending_success,
     RowClass.DONE),
    ("staged in a queued or running job of the same spec", lambda f: f.in_flight,
     RowClass.IN_FLIGHT),
    ("failed max_attempts times: reported, not retried", lambda f: f.failures >= f.max_attempts,
     RowClass.FAILED),
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
        if row.get("status") == "succeeded":
            out.append((str(row.get("request_hash")), LedgerState(True, 0, None)))
        elif row.get("status") == "failed":
            out.append((str(row.get("request_hash")),
                        LedgerState(False, int(row.get("attempts") or 1), row.get("error"))))
    retry = row.get("retry")
    if isinstance(retry, Mapping) and retry.get("spec_hash") == spec_hash:
        out.append((str(retry.get("request_hash")),
                    LedgerState(False, int(retry.get("attempts") or 1), retry.get("error"))))
    return out


def ledger_state(row: Mapping[str, Any] | None, spec_hash: str, request_hash: str) -> LedgerState:
    """How a destination row stands for (spec_hash, request_hash): answered, or failed N times."""
    if row is None:
        return NOTHING
    for hashed, state in ledger_entries(row, spec_hash):
        if hashed == request_hash:
            return state
    return NOTHING

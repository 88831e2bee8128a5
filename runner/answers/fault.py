"""Whose failure an error is, pure: the one table from an answer line's code and text to the row,
the infrastructure or the credentials. Only the row's own failure spends one of its attempts."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Final

from runner.rpc import Code


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
# How batchrun itself tells an answer it cannot use (outputs, collect): the row's, whatever
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

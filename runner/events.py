"""What apply reports as it goes, as data: display words it, apply never does. Pure."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Created:
    manifest: str
    job: str
    rows: int


@dataclass(frozen=True, slots=True)
class Collected:
    manifest: str
    jobs: int
    ended: tuple[str, ...]  # states other than succeeded among them
    answered: int
    refused: int
    to_do_again: int  # rows a job-level failure left unanswered: no attempt used


@dataclass(frozen=True, slots=True)
class Cancelled:
    manifest: str
    job: str
    orphan: bool = False  # its manifest is gone (--prune)


@dataclass(frozen=True, slots=True)
class QuotaFull:
    manifest: str
    detail: str = ""  # the service's refusal, when it refused the create


@dataclass(frozen=True, slots=True)
class Refreshed:
    """Fingerprints written beside answers that stand (their rows were known by request)."""

    manifest: str
    rows: int


@dataclass(frozen=True, slots=True)
class Reshaped:
    """Answers re-derived from the stored ones (a response-shaping change): nothing paid."""

    manifest: str
    rows: int
    refused: int  # stored answers the new rules refuse: sent again by the next apply


@dataclass(frozen=True, slots=True)
class SourceMoved:
    """The source changed between plan and apply: only the plan's rows were sent."""

    manifest: str


@dataclass(frozen=True, slots=True)
class LockWait:
    """apply --wait found another apply at work; it looks again later."""

    detail: str


@dataclass(frozen=True, slots=True)
class Holding:
    """apply --wait holds a manifest's rows back after a job-level failure: nothing runs and
    nothing is sent until `until`."""

    manifest: str
    rows: int
    until: str  # UTC, "%Y-%m-%d %H:%M:%S"
    internal: bool  # Vertex's INTERNAL on a region's first job (quota.internal_retry_delay)
    state: str | None = None  # how the last job ended (a failure back-off)
    error: str | None = None  # its error, redacted


Event = (Created | Collected | Cancelled | QuotaFull | Reshaped | Refreshed | SourceMoved | LockWait
         | Holding)
Listener = Callable[[Event], None]

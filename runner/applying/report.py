"""What an apply did, as data for the views (ApplyReport), and the listener that says nothing.
Decides and writes nothing."""

from __future__ import annotations

from dataclasses import dataclass, field

from runner.events import Event


@dataclass
class ApplyReport:
    created: list[str] = field(default_factory=list)
    collected: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    rows_sent: int = 0
    rows_collected: int = 0
    rows_to_do_again: int = 0  # caught in a job-level failure: no attempt used
    skipped: list[str] = field(default_factory=list)  # creates found already done, and why
    source_moved: list[str] = field(default_factory=list)  # manifests whose source changed since
    removed: list[str] = field(default_factory=list)  # leftovers of old collected jobs (gc)
    reshaped: int = 0  # rows re-derived from stored answers, unpaid


def quiet(_: Event) -> None:
    """The listener that says nothing (the API's default)."""
    pass

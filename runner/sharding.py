"""Splitting the rows to send into jobs, and counting the job slots in use: the one splitting rule
the planner shows and apply carries out. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Sequence

from runner.backends.base import RemoteJob
from runner.spec import Settings


class Sharder:
    """Splits a stream of request lines into jobs within the per-job row and byte limits."""

    def __init__(self, settings: Settings) -> None:
        self.max_rows = settings.quota.max_rows_per_job
        self.max_bytes = settings.quota.max_bytes_per_job
        self.shards = 0
        self._rows = self._bytes = 0

    def full(self, size: int) -> bool:
        """Whether a line of `size` bytes must start a new shard (the one splitting rule)."""
        return self.shards == 0 or self._rows >= self.max_rows or self._bytes + size > self.max_bytes

    def add(self, size: int) -> bool:
        """Count one line of `size` bytes; True when it starts a new shard."""
        if self.full(size):
            self.shards += 1
            self._rows = self._bytes = 0
            new = True
        else:
            new = False
        self._rows += 1
        self._bytes += size
        return new


def busy_slots(jobs: Sequence[RemoteJob]) -> int:
    return sum(1 for j in jobs if j.state.in_flight)

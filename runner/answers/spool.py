"""Result rows of finished jobs, parsed once per command: the row pass keeps each job's rows (and
its tally) in a temp file as it reads them, and collect replays them instead of reading and
parsing the job's output again. Writes only its own temp file; decides nothing.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:  # collect (parsing, schemas) loads when a job is read, not with the planner
    from runner.answers.collect import Tally


@dataclass
class _Kept:
    start: int
    rows: int
    tally: Tally


@dataclass
class ResultSpool:
    """The result rows of the jobs read whole, by job name, in the order they were made."""

    _file: IO[bytes] | None = None
    _jobs: dict[str, _Kept] = field(default_factory=dict)

    def keep(self, job_name: str, rows: Iterable[dict[str, Any]], tally: Tally
             ) -> Iterator[dict[str, Any]]:
        """`rows` passed through and kept; the job counts as kept only once they were read to the
        end (a pass stopped half-way leaves the job to be parsed again)."""
        if self._file is None:
            self._file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        spool = self._file
        # Kept during the plan, replayed during apply: nothing reads while a job is being kept.
        spool.seek(0, 2)
        start, count = spool.tell(), 0
        for row in rows:
            spool.write(orjson.dumps(row) + b"\n")
            count += 1
            yield row
        self._jobs[job_name] = _Kept(start, count, tally)

    def __contains__(self, job_name: object) -> bool:
        return job_name in self._jobs

    def replay(self, job_name: str, tally: Tally) -> Iterator[dict[str, Any]]:
        """The job's rows as kept, its tally added to `tally`. Collect reads one job's rows to
        the end before the next, so each replay reads its stretch of the file in one sweep."""
        kept = self._jobs[job_name]
        tally.add(kept.tally)
        assert self._file is not None
        self._file.seek(kept.start)
        for _ in range(kept.rows):
            yield orjson.loads(self._file.readline())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._jobs.clear()

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
        spool.seek(0, 2)
        start, count = spool.tell(), 0
        for row in rows:
            spool.seek(0, 2)  # a replay may have moved the position meanwhile
            spool.write(orjson.dumps(row) + b"\n")
            count += 1
            yield row
        self._jobs[job_name] = _Kept(start, count, tally)

    def __contains__(self, job_name: object) -> bool:
        return job_name in self._jobs

    def replay(self, job_name: str, tally: Tally) -> Iterator[dict[str, Any]]:
        """The job's rows as kept, its tally added to `tally`."""
        kept = self._jobs[job_name]
        tally.answered += kept.tally.answered
        tally.refused += kept.tally.refused
        tally.to_do_again += kept.tally.to_do_again
        tally.unreadable += kept.tally.unreadable
        assert self._file is not None
        position = kept.start
        for _ in range(kept.rows):
            self._file.seek(position)
            line = self._file.readline()
            position = self._file.tell()
            yield orjson.loads(line)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._jobs.clear()

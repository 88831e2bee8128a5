"""FakeBackend: an in-memory Backend that really implements the interface and records every call.

Jobs move only when the test says so (`run_all`), answers come from the same echo executor as the
local backend, and `sent` counts every row a job ever executed, so tests can prove no row was paid
for twice.
"""

from __future__ import annotations

import contextlib
import itertools
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import orjson

from runner.backends.base import (
    Finding,
    IndexEntry,
    JobRequest,
    JobState,
    RemoteJob,
    StagedInput,
    select,
)
from runner.backends.local.executors import echo
from runner.backends.stores import files as localfiles
from runner.errors import BackendError, LockError
from runner.identity import digest
from runner.rows.records import AnsweredIn, LedgerRows, RowIssue, SourceRow, Unchanged
from runner.spec import DestinationSpec, ExecutorSpec, Family, SourceSpec


class FakeBackend:
    kind = "fake"
    regional = False

    def __init__(self, fail_ids: Iterable[str] = ()) -> None:
        self.jobs: dict[str, RemoteJob] = {}
        self.family: dict[str, Family] = {}
        self.staged: dict[str, list[tuple[bytes, IndexEntry]]] = {}
        self.outputs: dict[str, list[bytes]] = {}
        self.destinations: dict[str, list[dict[str, Any]]] = {}
        self.collected: dict[str, set[str]] = {}
        self.forgiven: dict[str, set[str]] = {}
        self.calls: list[tuple[str, str]] = []
        self.sent: Counter[tuple[str, str]] = Counter()  # (manifest, custom_id) -> times executed
        self.fail_ids = set(fail_ids)
        self.locked: set[str] = set()
        self._ids = itertools.count(1000)
        self._clock = itertools.count(1)

    # reads
    def read_source(self, source: SourceSpec, answered: AnsweredIn | None = None
                    ) -> Iterator[SourceRow | RowIssue | Unchanged]:
        self.calls.append(("read_source", source.location))
        return localfiles.read_source(source)

    def read_ledger(self, dest: DestinationSpec, columns: Sequence[str], source: SourceSpec,
                    answered: AnsweredIn) -> LedgerRows | None:
        return None  # files: the whole ledger is read; rows are told by fingerprint

    def list_jobs(self, manifest_name: str | None = None,
                  in_flight_only: bool = False) -> list[RemoteJob]:
        self.calls.append(("list_jobs", manifest_name or ""))
        return select(self.jobs.values(), manifest_name, in_flight_only)

    def foreign_jobs(self) -> list[RemoteJob]:
        return []  # one project: nobody else's jobs

    def get_job(self, name: str) -> RemoteJob:
        return self.jobs[name]

    def read_index(self, job: RemoteJob) -> Iterator[IndexEntry]:
        return iter([entry for _, entry in self.staged[job.input_digest]])

    def read_output(self, job: RemoteJob) -> Iterator[bytes | dict[str, Any]]:
        self.calls.append(("read_output", job.name))
        return iter(self.outputs.get(job.name, []))

    def read_destination(self, dest: DestinationSpec,
                         columns: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
        self.calls.append(("read_destination", dest.location))
        rows = self.destinations.get(dest.location, [])
        if columns is not None:  # like a table queried for some columns: only those come back
            return iter([{k: r.get(k) for k in columns} for r in rows])
        return iter([dict(r) for r in rows])

    def source_stamp(self, source: SourceSpec) -> Any:
        return localfiles.source_stamp(source)

    def destination_stamp(self, dest: DestinationSpec) -> Any:
        if dest.location not in self.destinations:
            return None
        return sum(1 for call, where in self.calls if call == "write_destination"
                   and where == dest.location)

    def count_tokens(self, family: Family, model: str, request: Mapping[str, Any]) -> int | None:
        return None

    def checkup(self, regions: Sequence[str], datasets: Mapping[str, str],
                max_concurrent_jobs: int, *, tables: Mapping[str, str] | None = None,
                write_probe: bool = False) -> list[Finding]:
        return [Finding(True, "fake backend: nothing to check")]

    def placement_problems(self, region: str | None, source: SourceSpec,
                           destination: DestinationSpec) -> list[tuple[str, str]]:
        return []

    def collected_jobs(self, dest: DestinationSpec) -> set[str]:
        self.calls.append(("collected_jobs", dest.location))
        return set(self.collected.get(dest.location, set()))

    def forgiven_jobs(self, dest: DestinationSpec) -> set[str]:
        return set(self.forgiven.get(dest.location, set()))

    def answerer(self, model: str) -> str:
        return "fake"

    def destination_columns(self, dest: DestinationSpec) -> frozenset[str] | None:
        # Read like a table (read_destination gives the columns asked for): the table's columns.
        rows = self.destinations.get(dest.location)
        return None if rows is None else frozenset(k for r in rows for k in r)

    # writes
    def forgive_jobs(self, dest: DestinationSpec, names: Iterable[str]) -> None:
        self.forgiven.setdefault(dest.location, set()).update(names)
    def stage(self, manifest_name: str, rows: Iterable[tuple[bytes, IndexEntry]]) -> StagedInput:
        items = list(rows)
        data = b"".join(line + b"\n" for line, _ in items)
        key = digest(data)
        self.staged[key] = items
        self.calls.append(("stage", manifest_name))
        return StagedInput(uri=f"mem://{key}", digest=key, rows=len(items), bytes=len(data))

    def _stamp(self) -> str:
        n = next(self._clock)
        return f"2026-01-01T00:{n // 60:02d}:{n % 60:02d}.000000Z"

    def create_job(self, request: JobRequest) -> RemoteJob:
        name = f"projects/fake/locations/x/batchPredictionJobs/{next(self._ids)}"
        job = RemoteJob(name=name, state=JobState.PENDING, labels=dict(request.labels),
                        display_name=request.display_name, model=request.model,
                        create_time=self._stamp(), input_uri=request.input.uri,
                        answered_by=self.answerer(request.model))
        self.jobs[name] = job
        self.family[name] = request.family
        self.calls.append(("create_job", name))
        return job

    def cancel_job(self, name: str) -> None:
        self.calls.append(("cancel_job", name))
        job = self.jobs[name]
        if job.state.in_flight:  # like partner models on Vertex: a cancelled job leaves no output
            self.jobs[name] = replace(job, state=JobState.CANCELLED, end_time=self._stamp(),
                                      error_code=1, error_message="CANCELED")

    def remove_job(self, job: RemoteJob, *, input_too: bool, dry_run: bool) -> list[str]:
        if not job.managed or not job.state.finished:
            return []
        things = [job.name] + ([f"mem://{job.input_digest}"] if input_too else [])
        if not dry_run:
            self.calls.append(("remove_job", job.name))
            del self.jobs[job.name]
            self.outputs.pop(job.name, None)
            if input_too:
                self.staged.pop(job.input_digest, None)
        return things

    def write_destination(self, dest: DestinationSpec, rows: Iterable[tuple[dict[str, Any], bool]],
                          *, collected: Iterable[str], append: bool = False) -> None:
        before = self.destinations.get(dest.location, []) if append else []
        self.destinations[dest.location] = before + [dict(r) for r, _ in rows]
        self.collected[dest.location] = set(collected)
        self.calls.append(("write_destination", dest.location))

    @contextlib.contextmanager
    def lock(self, manifest_name: str) -> Iterator[None]:
        if manifest_name in self.locked:
            raise LockError(f"{manifest_name} is locked")
        self.locked.add(manifest_name)
        try:
            yield
        finally:
            self.locked.discard(manifest_name)

    def unlock(self, manifest_name: str) -> str:
        return f"{manifest_name} was not locked"

    # test controls
    def run(self, name: str, state: JobState = JobState.SUCCEEDED) -> None:
        """Execute a pending job with echo, as Vertex would, and finish it in `state`."""
        job = self.jobs[name]
        if not job.state.in_flight:
            raise BackendError(f"{name} already finished")
        execute = echo(ExecutorSpec(fail_ids=tuple(self.fail_ids)), self.family[name], job.model)
        lines = []
        for line, entry in self.staged[job.input_digest]:
            self.sent[(job.manifest_name, entry.custom_id)] += 1
            lines.append(orjson.dumps(execute(orjson.loads(line))))
        if state is JobState.SUCCEEDED:
            self.outputs[name] = lines
        self.jobs[name] = replace(job, state=state, end_time=self._stamp(),
                                  output_uri=f"mem://out/{name}" if state is JobState.SUCCEEDED
                                  else None,
                                  error_code=13 if state is JobState.FAILED else None,
                                  error_message="INTERNAL" if state is JobState.FAILED else None)

    def end(self, name: str, state: JobState, *, answered: int = 0, code: int | None = None,
            message: str | None = None) -> None:
        """End a job at job level (FAILED, EXPIRED, CANCELLED) after answering its first
        `answered` rows, whose output it keeps, as Vertex keeps what an expired job finished."""
        job = self.jobs[name]
        execute = echo(ExecutorSpec(fail_ids=tuple(self.fail_ids)), self.family[name], job.model)
        lines = []
        for line, entry in self.staged[job.input_digest][:answered]:
            self.sent[(job.manifest_name, entry.custom_id)] += 1
            lines.append(orjson.dumps(execute(orjson.loads(line))))
        self.outputs[name] = lines
        self.jobs[name] = replace(job, state=state, end_time=self._stamp(),
                                  output_uri=f"mem://out/{name}" if lines else None,
                                  error_code=code, error_message=message)

    def run_all(self) -> None:
        for name, job in list(self.jobs.items()):
            if job.state.in_flight:
                self.run(name)

    def created(self) -> list[str]:
        return [n for c, n in self.calls if c == "create_job"]

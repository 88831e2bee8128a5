"""The backend interface: observed remote state (jobs with Vertex states and labels), the read-only
view the planner gets, and the read/write view only apply gets. Knows nothing of plans.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from runner.identity import (
    INPUT_LABEL,
    MANAGED_LABEL,
    MANAGED_VALUE,
    NAME_LABEL,
    PREVIEW_LABEL,
    PROJECT_LABEL,
    SPEC_LABEL,
)
from runner.rows.records import AnsweredIn, LedgerRows, RowIssue, SourceRow, Unchanged
from runner.spec import DestinationSpec, Family, SourceSpec


class JobState(StrEnum):
    """Vertex's JobState names (reference §3.1)."""

    UNSPECIFIED = "JOB_STATE_UNSPECIFIED"
    QUEUED = "JOB_STATE_QUEUED"
    PENDING = "JOB_STATE_PENDING"
    RUNNING = "JOB_STATE_RUNNING"
    SUCCEEDED = "JOB_STATE_SUCCEEDED"
    FAILED = "JOB_STATE_FAILED"
    CANCELLING = "JOB_STATE_CANCELLING"
    CANCELLED = "JOB_STATE_CANCELLED"
    PAUSED = "JOB_STATE_PAUSED"
    EXPIRED = "JOB_STATE_EXPIRED"
    UPDATING = "JOB_STATE_UPDATING"
    PARTIALLY_SUCCEEDED = "JOB_STATE_PARTIALLY_SUCCEEDED"

    @property
    def finished(self) -> bool:
        return self in _FINISHED

    @property
    def in_flight(self) -> bool:
        """Unknown and paused states count as in flight: never resend rows that may still run."""
        return not self.finished

    @property
    def short(self) -> str:
        return self.value.removeprefix("JOB_STATE_").lower()


IN_FLIGHT_STATES = ("JOB_STATE_QUEUED", "JOB_STATE_PENDING", "JOB_STATE_RUNNING",
                    "JOB_STATE_CANCELLING", "JOB_STATE_UPDATING", "JOB_STATE_PAUSED",
                    "JOB_STATE_UNSPECIFIED")


def region_of(name: str) -> str | None:
    """The location in a job's resource name (projects/P/locations/R/batchPredictionJobs/ID)."""
    parts = name.split("/")
    return parts[3] if len(parts) > 3 and parts[2] == "locations" else None


def select(jobs: Iterable[RemoteJob], manifest_name: str | None,
           in_flight_only: bool) -> list[RemoteJob]:
    """The same narrowing in memory, for backends without a server-side filter."""
    out = [j for j in jobs if (manifest_name is None or j.manifest_name == manifest_name)
           and (not in_flight_only or j.state.in_flight)]
    return sorted(out, key=lambda j: j.create_time or "", reverse=True)


def ours_by_label(job: RemoteJob, ids: tuple[str, str]) -> bool | None:
    """Whether the project of ids (its id, the default it had before one was written) made `job`,
    by its project label; None for a job made before projects had ids, which the backend tells
    by where its input lives. Jobs labelled with the default stay the project's once an id is
    written, so writing one never orphans a running job (or sends its rows again)."""
    if not job.project:
        return None
    return job.project in ids


_FINISHED = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.EXPIRED,
                       JobState.PARTIALLY_SUCCEEDED})


@dataclass(frozen=True, slots=True)
class RemoteJob:
    """A batch job as observed; every field but name may be missing in the remote answer."""

    name: str
    state: JobState
    labels: Mapping[str, str] = field(default_factory=dict)
    display_name: str = ""
    model: str = ""
    create_time: str | None = None
    end_time: str | None = None
    error_code: int | None = None
    error_message: str | None = None
    succeeded_count: int | None = None
    failed_count: int | None = None
    input_uri: str | None = None
    output_uri: str | None = None  # outputInfo: the directory or table the job wrote
    # Who answers its rows (identity.local_answerer, or "vertex"): part of each answer's identity.
    answered_by: str = ""

    @property
    def managed(self) -> bool:
        return self.labels.get(MANAGED_LABEL) == MANAGED_VALUE

    @property
    def region(self) -> str | None:
        return region_of(self.name)

    @property
    def manifest_name(self) -> str:
        return self.labels.get(NAME_LABEL, "")

    @property
    def spec_hash(self) -> str:
        return self.labels.get(SPEC_LABEL, "")

    @property
    def input_digest(self) -> str:
        return self.labels.get(INPUT_LABEL, "")

    @property
    def preview(self) -> bool:
        return PREVIEW_LABEL in self.labels

    @property
    def project(self) -> str:
        """The batchrun project that made the job; "" for a job made before projects had ids."""
        return self.labels.get(PROJECT_LABEL, "")

    def belongs_to(self, spec_hash: str) -> bool:
        """Whether a manifest under `spec_hash` may collect, cancel or count this job: a preview
        of another spec is left alone (collected once that spec is the manifest's)."""
        return not self.preview or self.spec_hash == spec_hash


@dataclass(slots=True)  # built per staged row: not frozen, which would cost 3x to construct
class IndexEntry:
    """One staged row as batchrun recorded it beside the job input."""

    custom_id: str
    request_hash: str
    passthrough: Mapping[str, Any]
    input_chars: int = 0
    source_fp: str = ""  # the source row's fingerprint, stored with its answer


@dataclass(frozen=True, slots=True)
class StagedInput:
    uri: str
    digest: str
    rows: int
    bytes: int


@dataclass(frozen=True, slots=True)
class JobRequest:
    display_name: str
    model: str  # publishers/P/models/M
    family: Family
    input: StagedInput
    labels: Mapping[str, str]
    manifest_name: str = ""
    source: SourceSpec | None = None  # decides a BigQuery input table on the vertex backend
    destination: DestinationSpec | None = None  # decides where the job writes its output
    # What answers should look like: lets the local echo executor answer JSON manifests in kind.
    response_format: str = "text"
    response_schema: Mapping[str, Any] | None = None
    region: str | None = None  # where the job runs (the vertex backend); None: the project's


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of `batchrun doctor`: what was checked, whether it is fine, and the fix."""

    ok: bool
    what: str
    fix: str | None = None
    warn: bool = False  # ok, but worth a look: shown with `!` and its fix; doctor still exits 0


class BackendReader(Protocol):
    """All that plan, status and results may touch."""

    kind: str
    regional: bool  # jobs run in regions, quota pools per family (sharding.pool_of); else one pool

    def read_source(self, source: SourceSpec, answered: AnsweredIn | None = None
                    ) -> Iterator[SourceRow | RowIssue | Unchanged]:
        """The source's rows. With `answered`, a backend that can tell the destination's answered
        rows where the source lives (BigQuery) leaves them there and yields Unchanged(count)
        first; any other reads every row."""
        ...

    def read_ledger(self, dest: DestinationSpec, columns: Sequence[str], source: SourceSpec,
                    answered: AnsweredIn) -> LedgerRows | None:
        """Where the source lives beside the destination (BigQuery): the destination's ledger
        rows but those answered under the spec for a source row still unchanged — the rows
        read_source(source, answered) then leaves there too. None: read the whole destination."""
        ...

    def list_jobs(self, manifest_name: str | None = None,
                  in_flight_only: bool = False) -> list[RemoteJob]:
        """This project's batchrun-managed jobs (server-side label filter, paged), newest first;
        narrowed to one manifest, or to jobs still in flight, so apply's re-reads stay a page or
        two. Jobs of other batchrun projects listed alongside are set aside (foreign_jobs)."""
        ...

    def foreign_jobs(self) -> list[RemoteJob]:
        """Other batchrun projects' jobs, as the last list_jobs() of every manifest saw them (in
        flight only, if that listing was): they use the same job quota and are counted against
        it, and doctor names them; nothing else of batchrun touches them."""
        ...

    def get_job(self, name: str) -> RemoteJob:
        """Any job by its resource name, managed or not (for `batchrun import`)."""
        ...

    def read_index(self, job: RemoteJob) -> Iterator[IndexEntry]: ...

    def read_output(self, job: RemoteJob) -> Iterator[bytes | dict[str, Any]]:
        """Raw output lines of a finished job; nothing when it left no output."""
        ...

    def read_destination(self, dest: DestinationSpec,
                         columns: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
        """The destination's rows; with `columns`, rows holding at least those (a table is queried
        for them alone, so the ledger never scans the answers)."""
        ...

    def destination_stamp(self, dest: DestinationSpec) -> Any:
        """A cheap version of the destination that changes whenever it is written (file size and
        time, table modification, object generation); None when it does not exist."""
        ...

    def source_stamp(self, source: SourceSpec) -> Any:
        """A cheap version of the source (file size and time, table modification, object
        generations) to notice a change between plan and apply; None when it cannot be told."""
        ...

    def count_tokens(self, family: Family, model: str, request: Mapping[str, Any]) -> int | None:
        """Exact input tokens from the service, or None where it has no such endpoint."""
        ...

    def collected_jobs(self, dest: DestinationSpec) -> set[str]: ...

    def answerer(self, model: str) -> str:
        """Who this backend, as configured now, would have answer `model` (publishers/P/models/M):
        a stored answer of anyone else is not this one's (identity.same_answerer)."""
        ...

    def destination_columns(self, dest: DestinationSpec) -> frozenset[str] | None:
        """A table's columns (every row has them); None where each row's own keys tell (files)."""
        ...

    def checkup(self, regions: Sequence[str], datasets: Mapping[str, str],
                max_concurrent_jobs: int, *, tables: Mapping[str, str] | None = None,
                write_probe: bool = False) -> list[Finding]:
        """`batchrun doctor`: credentials, project, the services, staging, each dataset (name ->
        the region of the job using it), each table read or written (name -> "read" or "write"),
        and the jobs running against the quota per region. Writes nothing remote unless
        `write_probe` (doctor --canary): what the identity may do is asked of the services."""
        ...

    def placement_problems(self, region: str | None, source: SourceSpec,
                           destination: DestinationSpec) -> list[tuple[str, str]]:
        """(where, location) of each dataset the job reads or writes that is not in `region`: the
        job would fail at import, after the wait. [] when all is in place (or nothing to check)."""
        ...

    def forgiven_jobs(self, dest: DestinationSpec) -> set[str]:
        """Failed jobs `batchrun retry` set aside: they no longer count toward blocking."""
        ...


class Backend(BackendReader, Protocol):
    """The read/write interface; only apply holds one."""

    def stage(self, manifest_name: str, rows: Iterable[tuple[bytes, IndexEntry]]) -> StagedInput:
        """Store request lines content-addressed (a retry re-uploads nothing)."""
        ...

    def create_job(self, request: JobRequest) -> RemoteJob: ...

    def cancel_job(self, name: str) -> None: ...

    def write_destination(self, dest: DestinationSpec, rows: Iterable[tuple[dict[str, Any], bool]],
                          *, collected: Iterable[str], append: bool = False) -> None:
        """Store the merged rows ((row, changed) for every row) atomically, then record the jobs
        now collected. Files rewrite all rows; tables MERGE the changed ones keyed on custom_id.
        With `append`, `rows` are new ids only, added after the rows already there."""
        ...

    def forgive_jobs(self, dest: DestinationSpec, names: Iterable[str]) -> None:
        """Add to the destination's record the failed jobs that no longer block its manifest."""
        ...

    def remove_job(self, job: RemoteJob, *, input_too: bool, dry_run: bool) -> list[str]:
        """Remove what a finished, collected job left behind — its output, intermediate tables,
        its record and, with `input_too`, its staged input — naming each thing (removed, or that
        would be with `dry_run`). Only batchrun's own: labelled jobs, its staging paths and its
        batchrun_in_/batchrun_out_ tables."""
        ...

    def lock(self, manifest_name: str) -> AbstractContextManager[None]: ...

    def unlock(self, manifest_name: str) -> str:
        """Remove a lock left by a dead owner; refuse while the owner lives."""
        ...


# The methods of Backend that change something: only runner/applying/writer.py calls them (the
# "one writer" import contract, runner/devtools/writecontract.py, reads this tuple).
WRITE_METHODS = ("stage", "create_job", "cancel_job", "write_destination", "forgive_jobs",
                 "remove_job", "lock", "unlock")

"""Frozen desired-state types: what the manifests and batchrun.yaml ask for. Pure data, no I/O."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Final


class Task(StrEnum):
    CHAT = "chat"
    EMBEDDINGS = "embeddings"


class Family(StrEnum):
    """The request row format Vertex reads; decided by the model's publisher and the task."""

    CLAUDE = "claude"
    OPENAI_CHAT = "openai-chat"
    OPENAI_EMBEDDINGS = "openai-embeddings"
    GEMINI = "gemini"  # publisher google: {"custom_id", "request": GenerateContentRequest}
    # publisher google, task embeddings: {"key", "request": {content}} (gemini-embedding-*), or
    # {"content", "custom_id"} (text-embedding-*, the older format)
    GEMINI_EMBEDDINGS = "gemini-embeddings"


@dataclass(frozen=True, slots=True)
class ModelRef:
    publisher: str
    model_id: str  # may carry "@version"

    @property
    def short(self) -> str:
        """"anthropic/claude-haiku-4-5@20251001": the form manifests and open-model bodies use."""
        return f"{self.publisher}/{self.model_id}"

    @property
    def resource(self) -> str:
        """"publishers/anthropic/models/claude-haiku-4-5@20251001": the form the job's model takes."""
        return f"publishers/{self.publisher}/models/{self.model_id}"

    @property
    def base(self) -> str:
        """The catalog key: publisher/model without "@version"."""
        return f"{self.publisher}/{self.model_id.split('@', 1)[0]}"


@dataclass(frozen=True, slots=True)
class Template:
    text: str
    where: str  # "spec.prompt.user" or the template file, for error messages
    line: int = 0  # the line of the manifest that holds or names it, for error messages


@dataclass(frozen=True, slots=True)
class PromptSpec:
    system: Template | None = None
    user: Template | None = None
    examples: tuple[tuple[Template, Template], ...] = ()
    input: Template | None = None  # embeddings

    def templates(self) -> tuple[Template, ...]:
        out = [t for t in (self.system, self.user, self.input) if t is not None]
        for user, assistant in self.examples:
            out.extend((user, assistant))
        return tuple(out)


class SourceKind(StrEnum):
    FILE = "file"
    BIGQUERY = "bigquery"
    GCS = "gcs"


@dataclass(frozen=True, slots=True)
class SourceSpec:
    kind: SourceKind
    location: str  # absolute file path, "project.dataset.table", a SQL query, or the first gs:// URI
    format: str  # "jsonl", "csv", "parquet", "requests" or "bigquery"
    id_column: str  # "custom_id" for ready-made request rows
    columns: tuple[str, ...] | None = None  # declared columns, if any
    uris: tuple[str, ...] = ()  # every gs:// URI of a Cloud Storage source
    is_query: bool = False
    line: int = 0  # where the source is written in its manifest, for errors; never hashed
    id_hash: bool = False  # send a hash of the id column (ids that do not fit custom_id's rule)
    max_id_chars: int = 64  # quota.max_id_chars, for a source that tells the ids sent in SQL
    # quota.max_request_bytes: a local row longer than a request may be is refused as it is read
    max_row_bytes: int = 1_000_000


class DestinationKind(StrEnum):
    FILE = "file"
    BIGQUERY = "bigquery"
    GCS = "gcs"


@dataclass(frozen=True, slots=True)
class DestinationSpec:
    kind: DestinationKind
    location: str  # absolute file path, "project.dataset.table" or "gs://bucket/prefix"
    identity: str  # the location as it enters the spec hash: file paths relative to the project
    adopt: bool = False  # may take over an existing destination batchrun did not write
    # An embeddings manifest's: a new BigQuery table holds `output` as ARRAY<FLOAT64>.
    vectors: bool = False


@dataclass(frozen=True, slots=True)
class ResponseSpec:
    format: str = "text"  # "text" or "json"
    schema: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Manifest:
    """One BatchJob document, validated: the desired result set of one job definition."""

    name: str
    file: Path
    line: int
    model: ModelRef
    task: Task
    family: Family
    parameters: Mapping[str, Any]
    source: SourceSpec
    prompt: PromptSpec
    destination: DestinationSpec
    response: ResponseSpec = field(default_factory=ResponseSpec)
    passthrough: tuple[str, ...] = ()
    max_attempts: int = 3
    protect: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)  # user labels: metadata, never hashed
    description: str = ""
    max_cost: float | None = None  # USD; a plan estimated above it fails before anything is sent
    # Where its jobs run: the manifest's region, else the project's, else the model's default
    # batch region from the catalogue. Never hashed: moving region re-sends nothing.
    region: str | None = None
    # "rerun": a new spec re-runs every row; "forward": only new and edited rows, older answers kept
    on_change: str = "rerun"
    spec_hash: str = ""
    digest: str = ""  # of the whole document and its template files: a saved plan's staleness check
    # Where a field a backend may refuse is written ("spec.source.id": 9): an error found past
    # loading (a BigQuery name, say) is placed at its line. Never hashed.
    lines: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FamilyQuota:
    """One request family's own job quota (batchrun.yaml quota.families.NAME); None: the default."""

    max_concurrent_jobs: int | None = None
    counted_per: str | None = None  # "project": jobs in every region count together; "region"
    max_request_bytes: int | None = None


# Where Vertex keeps each family's quota, and its documented request size. Claude: "up to four
# concurrent batch requests in a single project" (Claude batch page) and a 30 MB request payload
# (Claude on Vertex). Open models: no batch quota or request limit documented; Vertex's standard
# quotas are per project and region (quotas page) - inferred, with batchrun's old 1 MB guard.
FAMILY_DEFAULTS: Final = {
    Family.CLAUDE.value: FamilyQuota(counted_per="project", max_request_bytes=30_000_000),
    Family.OPENAI_CHAT.value: FamilyQuota(counted_per="region", max_request_bytes=1_000_000),
    Family.OPENAI_EMBEDDINGS.value: FamilyQuota(counted_per="region", max_request_bytes=1_000_000),
    # Gemini: "no predefined quota limits" on concurrent jobs (batch overview) - the default pool
    # of 4 per region stands; no per-request size is documented, the job's input is 1 GB - 10 MB
    # is batchrun's guard (inferred).
    Family.GEMINI.value: FamilyQuota(counted_per="region", max_request_bytes=10_000_000),
    Family.GEMINI_EMBEDDINGS.value: FamilyQuota(counted_per="region", max_request_bytes=1_000_000),
}

# A family's own ceiling on one job, whatever batchrun.yaml asks: Gemini takes "up to 200,000
# requests" and a 1 GB input file per job (batch overview, via the Gemini research note).
# Gemini embeddings: "up to 1,000,000 rows per job, input file up to 1 GB" (embeddings batch page).
JOB_LIMITS: Final = {Family.GEMINI.value: (200_000, 1_000_000_000),
                     Family.GEMINI_EMBEDDINGS.value: (1_000_000, 1_000_000_000)}


@dataclass(frozen=True, slots=True)
class Quota:
    max_concurrent_jobs: int = 4  # every family's, unless quota.families names its own
    max_rows_per_job: int = 100_000
    max_bytes_per_job: int = 1_000_000_000
    max_request_bytes: int | None = None  # every family's when set; else each family's own
    # Anthropic's batch API allows custom_id of 1-64 characters; Vertex documents no other limit.
    max_id_chars: int = 64
    # Vertex fails the first job in a region with INTERNAL (code 13); its docs say resubmit later.
    internal_retry_delay: int = 600
    # After a job-level failure (not the rows' fault) the next create waits, doubling from this.
    failure_backoff: float = 60.0
    failure_backoff_max: float = 3600.0
    # Job-level failures of the same rows in a row, none answered, before the manifest is blocked.
    max_job_failures: int = 3
    families: Mapping[str, FamilyQuota] = field(default_factory=dict)  # batchrun.yaml's own

    def _own(self, family: Family) -> FamilyQuota:
        return self.families.get(family.value) or FamilyQuota()

    def concurrent_jobs(self, family: Family) -> int:
        return self._own(family).max_concurrent_jobs or self.max_concurrent_jobs

    def counted_per(self, family: Family) -> str:
        return (self._own(family).counted_per or FAMILY_DEFAULTS[family.value].counted_per
                or "region")

    def request_bytes(self, family: Family) -> int:
        return (self._own(family).max_request_bytes or self.max_request_bytes
                or FAMILY_DEFAULTS[family.value].max_request_bytes or 1_000_000)


@dataclass(frozen=True, slots=True)
class ExecutorSpec:
    """How the local backend answers one model: echo, an HTTP endpoint, or local embeddings."""

    type: str = "echo"
    base_url: str | None = None
    api_key_env: str | None = None
    model: str | None = None
    concurrency: int = 4
    timeout: float = 120.0  # seconds for one request, from connect to the answer's last byte
    # An answer's bytes past which the endpoint is broken: a long chat answer or a 3,072-float
    # embedding is well under 1 MiB; an endless body is not.
    max_response_bytes: int = 16 * 1024 * 1024
    model_path: str | None = None
    fail_ids: tuple[str, ...] = ()
    # 429, 5xx, timeouts and refused connections are tried again inside the job, then fail the job.
    retries: int = 4
    retry_delay: float = 1.0
    batch_size: int = 64  # rows per encode call (sentence-transformers): a model is fast in batches


@dataclass(frozen=True, slots=True)
class Settings:
    """batchrun.yaml after the environment overlay, environment variables and flags."""

    root: Path  # the project root: where batchrun.yaml is, or the working directory
    config_file: Path | None
    backend: str = "local"
    project: str | None = None
    region: str | None = None
    staging: str | None = None
    environment: str | None = None
    environments: tuple[str, ...] = ()  # every environment batchrun.yaml defines
    manifests: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)
    quota: Quota = field(default_factory=Quota)
    executor: ExecutorSpec = field(default_factory=ExecutorSpec)
    model_executors: Mapping[str, ExecutorSpec] = field(default_factory=dict)
    pricing: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    max_cost: float | None = None  # USD for one apply, over every manifest
    # Days a collected job's staged input, intermediate tables and record are kept (gc).
    retention: float = 7.0
    origins: Mapping[str, str] = field(default_factory=dict)  # setting -> "flag", "env", "file"...
    # Local paths a manifest may read or write: the project only (False), anywhere (True), or the
    # project plus these folders (relative to the project).
    allow_paths_outside: bool | tuple[str, ...] = False
    # batchrun.yaml's id: the batchrun-project label of every job the project makes, and the folder
    # of its files under staging. None in a project made before ids (see project_label).
    project_id: str | None = None
    # batchrun.yaml's line of each defaults.parameters key, to locate a default a model refuses.
    default_lines: Mapping[str, int] = field(default_factory=dict)

    @property
    def state_dir(self) -> Path:
        return self.root / ".batchrun"

    @property
    def default_project_id(self) -> str:
        """The project's id when batchrun.yaml has none. On Vertex, a digest of the staging
        location: the same in every checkout, CI and environment that shares the staging prefix,
        which is what the files of jobs made before ids were told apart by anyway (projects
        sharing a staging prefix without ids stay one project: doctor and plan say to write ids).
        A local project's jobs are in its own .batchrun/: any constant does."""
        if self.backend == "vertex" and self.staging:
            return "staging-" + hashlib.sha256(self.staging.rstrip("/").encode()).hexdigest()[:16]
        return "local"

    @property
    def project_label(self) -> str:
        """The value of the batchrun-project label of this project's jobs."""
        return self.project_id or self.default_project_id

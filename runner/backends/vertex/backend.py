"""VertexBackend: jobs through Vertex REST, rows through Cloud Storage and BigQuery. Knows nothing of
plans. Endpoints come from BATCHRUN_VERTEX_ENDPOINT, STORAGE_EMULATOR_HOST and
BATCHRUN_BIGQUERY_ENDPOINT, so the same code runs against the emulators in tests."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from runner.backends import staging
from runner.backends.base import (
    IN_FLIGHT_STATES,
    Finding,
    IndexEntry,
    JobRequest,
    RemoteJob,
    StagedInput,
    region_of,
    select,
)
from runner.backends.stores.base import Store, StoredRows
from runner.backends.stores.bq import BigQuery
from runner.backends.stores.bqstore import BigQueryStore
from runner.backends.stores.files import FileStore
from runner.backends.stores.gcs import Gcs, split
from runner.backends.stores.gcsstore import GcsStore
from runner.backends.stores.records import CloudRecords
from runner.backends.vertex import jobs as vjobs
from runner.backends.vertex import listing
from runner.backends.vertex.explain import explaining
from runner.backends.vertex.lease import GcsLock, Leases, LeaseTimes
from runner.backends.vertex.listing import MANAGED_FILTER
from runner.backends.vertex.owners import Owners, job_folder
from runner.backends.vertex.rest import (
    RetryPolicy,
    TransientCreateError,
    VertexClient,
)
from runner.errors import BackendError, error
from runner.identity import (
    NAME_LABEL,
    PROJECT_LABEL,
    VERTEX_ANSWERER,
)
from runner.project.paths import is_destination_lock
from runner.spec import (
    DestinationSpec,
    Family,
    Settings,
    SourceKind,
    SourceSpec,
)

log = logging.getLogger(__name__)


@explaining
class VertexBackend(StoredRows):
    kind = "vertex"
    regional = True

    def __init__(self, settings: Settings, *, client: VertexClient | None = None,
                 gcs: Gcs | None = None, retry: RetryPolicy | None = None,
                 regions: Sequence[str] = (), lease: LeaseTimes | None = None) -> None:
        if not (settings.project and settings.staging):
            raise BackendError("the vertex backend needs project and staging settings")
        self.settings = settings
        self.staging = settings.staging.rstrip("/")
        self.project_id = settings.project_label  # its files: its own folder of a shared staging
        self.base = f"{self.staging}/{self.project_id}"
        self.owners = Owners(self)
        self._foreign: list[RemoteJob] = []  # other projects' jobs, of the last full listing
        self.retry = retry or RetryPolicy()
        # Every region a manifest's jobs run in (and the project's): listed, counted, created in.
        self.regions = tuple(sorted({*regions, *([settings.region] if settings.region else [])}))
        self._clients: dict[str, VertexClient] = {}
        if client is not None and settings.region:
            self._clients[settings.region] = client
        self.unfiltered: set[str] = set()  # regions whose service refused the label filter
        self.notices: list[str] = []  # said once per command (read by doctor and the CLI)
        self._gcs = gcs
        self._bq: BigQuery | None = None
        self._stores: dict[str, Store] = {}
        self._staging_ok = False
        self.leases = Leases(lease or LeaseTimes.from_env())  # checked before each remote write

    @property
    def gcs(self) -> Gcs:
        if self._gcs is None:
            self._gcs = Gcs()
        return self._gcs

    @property
    def bq(self) -> BigQuery:
        if self._bq is None:
            assert self.settings.project is not None
            self._bq = BigQuery(self.settings.project, deadline=self.retry.timeout)
        return self._bq

    # --- reading -------------------------------------------------------------------------------

    def source_store(self, source: SourceSpec) -> Store:
        return self._store(source.kind.value)

    def destination_store(self, dest: DestinationSpec) -> Store:
        return self._store(dest.kind.value)

    def _store(self, kind: str) -> Store:
        """The store of a kind ("file", "gcs", "bigquery"), made when first used: the Google
        clients are not made for a project of local files."""
        if kind not in self._stores:
            makers: dict[str, Callable[[], Store]] = {
                "file": FileStore,
                "gcs": lambda: GcsStore(self.gcs, CloudRecords(lambda: self.gcs, self.staging)),
                "bigquery": lambda: BigQueryStore(self.bq,
                                                  CloudRecords(lambda: self.gcs, self.staging))}
            self._stores[kind] = makers[kind]()
        return self._stores[kind]

    def before_write(self) -> None:
        self.leases.check()

    def _check_staging(self) -> None:
        """Once per backend: the staging bucket exists. Said at plan time, not after the rows
        were rendered and their upload failed."""
        if self._staging_ok:
            return
        bucket, _ = split(self.staging)
        if not self.gcs.client.bucket(bucket).exists():
            raise BackendError([error(
                f"the staging bucket gs://{bucket} does not exist",
                hint=f"create it (`gcloud storage buckets create gs://{bucket} --location "
                     f"{self.settings.region or self.regions[0] if self.regions else 'REGION'}`) or fix "
                     "staging in batchrun.yaml")])
        self._staging_ok = True

    def client(self, region: str | None = None) -> VertexClient:
        """The REST client of one region (the project's when None)."""
        region = region or self.settings.region or (self.regions[0] if self.regions else None)
        if region is None:
            raise BackendError([error("no Vertex region: neither the manifests, batchrun.yaml nor "
                                      "the model catalogue name one",
                                      hint="set region in batchrun.yaml or spec.region")])
        found = self._clients.get(region)
        if found is None:
            found = self._clients[region] = VertexClient(
                project=str(self.settings.project), region=region,
                endpoint=os.environ.get("BATCHRUN_VERTEX_ENDPOINT"), retry=self.retry)
        return found

    def list_jobs(self, manifest_name: str | None = None,
                  in_flight_only: bool = False) -> list[RemoteJob]:
        self._check_staging()
        query = MANAGED_FILTER
        if manifest_name is not None:
            query += f' AND labels.{NAME_LABEL}="{manifest_name}"'
        if in_flight_only:
            query += " AND (" + " OR ".join(f'state="{s}"' for s in IN_FLIGHT_STATES) + ")"
        found: list[RemoteJob] = []
        for region in self.regions or (None,):
            found.extend(vjobs.parse_job(j) for j in self.list_region(region, query))
        # Every project's jobs in one listing, split here: the quota counts them all (foreign_jobs).
        mine, foreign = self.owners.split(found)
        if manifest_name is None:
            self._foreign = select(foreign, None, in_flight_only)
        return select(mine, manifest_name, in_flight_only)

    def foreign_jobs(self) -> list[RemoteJob]:
        return list(self._foreign)

    def list_region(self, region: str | None, query: str) -> Iterator[dict[str, Any]]:
        return listing.region_jobs(self, region, query)

    def get_job(self, name: str) -> RemoteJob:
        return vjobs.parse_job(self.client(region_of(name)).get(name))

    def inputs(self, manifest_name: str) -> str:
        return f"{self.base}/{manifest_name}/inputs"

    def read_index(self, job: RemoteJob) -> Iterator[IndexEntry]:
        uri = f"{job_folder(self.staging, job)}/inputs/{job.input_digest}.index.jsonl"
        yield from staging.read_index(uri, self.gcs.lines(uri))

    def read_output(self, job: RemoteJob) -> Iterator[bytes | dict[str, Any]]:
        if not job.output_uri:
            return
        if job.output_uri.startswith("bq://"):
            if self.bq.table_exists(job.output_uri.removeprefix("bq://")):
                yield from self.bq.output_rows(job.output_uri)
            return
        for uri in self.gcs.list_jsonl(job.output_uri):
            yield from self.gcs.lines(uri)

    def count_tokens(self, family: Family, model: str, request: Mapping[str, Any]) -> int | None:
        if family is not Family.CLAUDE:
            return None  # only Claude has a count-tokens endpoint on Vertex
        inner = request.get("request")
        return self.client().count_tokens(model.rsplit("/", 1)[-1],
                                        inner if isinstance(inner, dict) else request)

    def checkup(self, regions: Sequence[str], datasets: Mapping[str, str],
                max_concurrent_jobs: int, *, tables: Mapping[str, str] | None = None,
                write_probe: bool = False) -> list[Finding]:
        from runner.backends.vertex import doctor

        return doctor.checkup(self, regions, datasets, max_concurrent_jobs, tables=tables or {},
                              write_probe=write_probe)

    def placement_problems(self, region: str | None, source: SourceSpec,
                           destination: DestinationSpec) -> list[tuple[str, str]]:
        found = {**self.source_store(source).locations(source),
                 **self.destination_store(destination).locations(destination)}
        return [(dataset, location) for dataset, location in found.items()
                if region and location is not None and location.lower() != region.lower()]

    def answerer(self, model: str) -> str:
        return VERTEX_ANSWERER

    # --- writing -------------------------------------------------------------------------------

    def stage(self, manifest_name: str, rows: Iterable[tuple[bytes, IndexEntry]]) -> StagedInput:
        self.leases.check()
        with tempfile.TemporaryDirectory() as tmp:
            inp, idx = Path(tmp) / "input.jsonl", Path(tmp) / "index.jsonl"
            name, count, size = staging.write_staged(rows, inp, idx)
            base = f"{self.inputs(manifest_name)}/{name}"
            # Index first: a job is created only after both exist, so its rows can always be read.
            self.gcs.upload_file(f"{base}.index.jsonl", idx, if_absent=True)
            self.gcs.upload_file(f"{base}.jsonl", inp, if_absent=True)
        return StagedInput(uri=f"{base}.jsonl", digest=name, rows=count, bytes=size)

    def _input_uri(self, request: JobRequest) -> str:
        source = request.source
        if source is None or source.kind is not SourceKind.BIGQUERY or source.is_query or (
                request.family is Family.GEMINI_EMBEDDINGS):  # Cloud Storage only
            return request.input.uri
        # Vertex reads BigQuery input in the job's region: stage beside the source table.
        project, dataset, _ = source.location.split(".", 2)
        table = f"{project}.{dataset}.batchrun_in_{request.input.digest[:20]}"
        self.bq.stage_requests(table, self.gcs.lines(request.input.uri),
                               claude=request.family in (Family.CLAUDE, Family.GEMINI))
        return f"bq://{table}"

    def create_job(self, request: JobRequest) -> RemoteJob:
        body = vjobs.create_body(display_name=request.display_name, model=request.model,
                                 input_uri=self._input_uri(request),
                                 output_uri=vjobs.output_uri(request, self.base),
                                 labels={**request.labels, PROJECT_LABEL: self.project_id})
        last: TransientCreateError | None = None
        # Allow for clock skew between this machine and the service.
        since = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        for attempt in range(self.retry.attempts):
            self.leases.check()  # the last moment a lost lock can stop a second job
            try:
                return vjobs.parse_job(self.client(request.region).create(body))
            except TransientCreateError as exc:
                # The first create may have succeeded: look before trying again.
                last = exc
                twin = listing.twin(self, request, since)
                if twin is not None:
                    return twin
                time.sleep(self.retry.delay(attempt))
        raise BackendError(f"could not create the job for {request.manifest_name}: {last}")

    def remove_job(self, job: RemoteJob, *, input_too: bool, dry_run: bool) -> list[str]:
        from runner.backends.vertex import leftovers

        return leftovers.remove(self, job, input_too=input_too, dry_run=dry_run)

    def cancel_job(self, name: str) -> None:
        self.leases.check()
        self.client(region_of(name)).cancel(name)

    def _lock(self, manifest_name: str) -> GcsLock:
        # A destination's lock is where every project writing it takes it; a manifest's, its own.
        folder = self.staging if is_destination_lock(manifest_name) else self.base
        return GcsLock(self.gcs, f"{folder}/_locks/{manifest_name}.json", times=self.leases.times)

    def lock(self, manifest_name: str) -> contextlib.AbstractContextManager[None]:
        return self.leases.hold(self._lock(manifest_name), manifest_name)

    def unlock(self, manifest_name: str) -> str:
        return self._lock(manifest_name).force(manifest_name)


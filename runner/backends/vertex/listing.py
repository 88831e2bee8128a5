"""Listing a region's batch jobs for the vertex backend: the label filter, its fallback when the
service refuses it, and finding the twin of an ambiguous create. Reads only; knows nothing of
plans."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from runner.backends.base import JobRequest, JobState, RemoteJob
from runner.backends.vertex import jobs as vjobs
from runner.backends.vertex.rest import VertexError
from runner.identity import INPUT_LABEL, MANAGED_LABEL, MANAGED_VALUE, NAME_LABEL, PROJECT_LABEL

if TYPE_CHECKING:
    from runner.backends.vertex.backend import VertexBackend

log = logging.getLogger(__name__)

MANAGED_FILTER = f'labels.{MANAGED_LABEL}="{MANAGED_VALUE}"'


def region_jobs(backend: VertexBackend, region: str | None, query: str) -> Iterator[dict[str, Any]]:
    """The region's jobs under `query`; if the service refuses the label filter, every job of
    the region, paged (callers narrow in memory, as they do anyway): a refused filter must
    neither stop every plan nor hide a running job (which would be sent twice)."""
    key = region or ""
    if key not in backend.unfiltered:
        try:
            yield from backend.client(region).list(query)
            return
        except VertexError as exc:
            if exc.status != 400:
                raise
            backend.unfiltered.add(key)
            backend.notices.append(
                f"Vertex AI refused the job filter in {region or 'the project region'} "
                f"({exc}); listing every job there and filtering here instead")
            log.warning(backend.notices[-1])
    yield from backend.client(region).list("")


def twin(backend: VertexBackend, request: JobRequest, since: str) -> RemoteJob | None:
    """A job our own ambiguous create made: same rows, created since we first tried."""
    project = backend.project_id
    query = (f'{MANAGED_FILTER} AND labels.{NAME_LABEL}="{request.manifest_name}" '
             f'AND labels.{INPUT_LABEL}="{request.input.digest}" AND labels.{PROJECT_LABEL}='
             f'"{project}" AND create_time>="{since}"')
    for raw in region_jobs(backend, request.region, query):
        job = vjobs.parse_job(raw)
        if (job.manifest_name != request.manifest_name or job.input_digest != request.input.digest
                or job.project != project
                or (job.create_time or "") < since):  # the filter's work, when it was refused
            continue
        if job.state.in_flight or job.state is JobState.SUCCEEDED:
            return job
    return None

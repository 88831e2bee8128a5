"""Pure mapping between Vertex BatchPredictionJob JSON and RemoteJob, and the create body. No I/O.

Every field is optional in an answer; int64 counts arrive as strings; enums may be names or ints.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from runner.backends.base import JobRequest, JobState, RemoteJob
from runner.identity import VERTEX_ANSWERER
from runner.redact import redact
from runner.spec import DestinationKind, Family

_STATE_BY_NUMBER = dict(enumerate(JobState))


def _state(value: Any) -> JobState:
    if isinstance(value, int):
        return _STATE_BY_NUMBER.get(value, JobState.UNSPECIFIED)
    try:
        return JobState(str(value))
    except ValueError:  # a state newer than this client: treat as in flight, never resend its rows
        return JobState.UNSPECIFIED


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def output_location(job: Mapping[str, Any]) -> str | None:
    """Where the job wrote: outputInfo first (never a guessed folder); for a job that ended without
    one (failed, expired, cancelled), the location we asked it to write under, which is unique to
    that create, so whatever it did write is found and collected."""
    info = job.get("outputInfo") or {}
    if info.get("gcsOutputDirectory"):
        return str(info["gcsOutputDirectory"])
    if info.get("bigqueryOutputTable") and info.get("bigqueryOutputDataset"):
        return f"{info['bigqueryOutputDataset']}.{info['bigqueryOutputTable']}"
    if not _state(job.get("state")).finished:
        return None
    config = job.get("outputConfig") or {}
    asked = ((config.get("bigqueryDestination") or {}).get("outputUri")
             or (config.get("gcsDestination") or {}).get("outputUriPrefix"))
    return str(asked) if asked else None


def input_location(job: Mapping[str, Any]) -> str | None:
    config = job.get("inputConfig") or {}
    uris = (config.get("gcsSource") or {}).get("uris")
    if isinstance(uris, str):
        return uris
    if uris:
        return str(uris[0])
    bq = (config.get("bigquerySource") or {}).get("inputUri")
    return str(bq) if bq else None


def parse_job(job: Mapping[str, Any]) -> RemoteJob:
    error = job.get("error") or {}
    stats = job.get("completionStats") or {}
    return RemoteJob(
        name=str(job.get("name", "")),
        state=_state(job.get("state", "JOB_STATE_UNSPECIFIED")),
        labels=dict(job.get("labels") or {}),
        display_name=str(job.get("displayName", "")),
        model=str(job.get("model", "")),
        create_time=job.get("createTime"),
        end_time=job.get("endTime"),
        error_code=_int(error.get("code")),
        error_message=error.get("message"),
        succeeded_count=_int(stats.get("successfulCount")),
        failed_count=_int(stats.get("failedCount")),
        input_uri=input_location(job),
        output_uri=output_location(job),
        answered_by=VERTEX_ANSWERER,
    )


def create_body(*, display_name: str, model: str, input_uri: str, output_uri: str,
                labels: Mapping[str, str]) -> dict[str, Any]:
    """The BatchPredictionJob to POST; `bq://` URIs select BigQuery, `gs://` Cloud Storage."""
    if input_uri.startswith("bq://"):
        input_config = {"instancesFormat": "bigquery", "bigquerySource": {"inputUri": input_uri}}
    else:
        input_config = {"instancesFormat": "jsonl", "gcsSource": {"uris": [input_uri]}}
    if output_uri.startswith("bq://"):
        output_config = {"predictionsFormat": "bigquery",
                         "bigqueryDestination": {"outputUri": output_uri}}
    else:
        output_config = {"predictionsFormat": "jsonl",
                         "gcsDestination": {"outputUriPrefix": output_uri}}
    return {"displayName": display_name, "model": model, "inputConfig": input_config,
            "outputConfig": output_config, "labels": dict(labels)}


def rpc_error_text(status: int, payload: Any, fallback: str) -> str:
    """google.rpc.Status JSON -> "429 RESOURCE_EXHAUSTED: Quota exceeded ..."."""
    err = payload.get("error") if isinstance(payload, Mapping) else None
    if not isinstance(err, Mapping):
        return redact(f"{status}: {fallback[:300]}")
    code = err.get("status") or err.get("code") or status
    return redact(f"{status} {code}: {err.get('message', '').strip() or fallback[:300]}")


def disabled_service(payload: Any) -> tuple[str, str | None] | None:
    """The service a 403 says is not enabled (google.rpc.ErrorInfo reason SERVICE_DISABLED), and
    the page that enables it; None for any other refusal."""
    err = payload.get("error") if isinstance(payload, Mapping) else None
    details = err.get("details") if isinstance(err, Mapping) else None
    for detail in details if isinstance(details, list) else ():
        if isinstance(detail, Mapping) and detail.get("reason") == "SERVICE_DISABLED":
            meta = detail.get("metadata")
            meta = meta if isinstance(meta, Mapping) else {}
            return (str(meta.get("service") or "aiplatform.googleapis.com"),
                    str(meta["activationUrl"]) if meta.get("activationUrl") else None)
    return None


def output_uri(request: JobRequest, folder: str) -> str:
    """Where a job writes: a new table beside a BigQuery destination, else a new prefix under the
    project's `folder` in staging."""
    dest = request.destination
    # Gemini embedding models read and write Cloud Storage only (their batch page): collect
    # merges into a BigQuery destination from there.
    if dest is not None and dest.kind is DestinationKind.BIGQUERY and (
            request.family is not Family.GEMINI_EMBEDDINGS):
        project, dataset, _ = dest.location.split(".", 2)
        # The table must not exist yet (reference §2.2): unique per create.
        return (f"bq://{project}.{dataset}.batchrun_out_{request.input.digest[:16]}_"
                f"{secrets.token_hex(3)}")
    # Unique per create too: a failed job without outputInfo is read from here, and must not
    # pick up what another job of the same rows wrote.
    return (f"{folder}/{request.manifest_name}/outputs/{request.input.digest}/"
            f"{secrets.token_hex(4)}/")

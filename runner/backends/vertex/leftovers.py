"""What a collected Vertex job leaves behind — its output objects or batchrun_out_ table, its
staged input (objects and batchrun_in_ table) and its record — found and removed for gc. Only
batchrun's own: labelled jobs, paths under staging, tables with batchrun's prefixes."""

from __future__ import annotations

from typing import Any

from runner.backends.base import RemoteJob, region_of
from runner.backends.vertex.owners import job_folder


def remove(backend: Any, job: RemoteJob, *, input_too: bool, dry_run: bool) -> list[str]:
    """Everything `job` left (removed, or that would be with `dry_run`), named."""
    if not job.managed or not job.state.finished:
        return []
    tables = [uri.removeprefix("bq://") for uri in (job.output_uri, job.input_uri if input_too
                                                     else None)
              if uri and uri.startswith("bq://") and uri.rsplit(".", 1)[-1].startswith(
                  ("batchrun_out_", "batchrun_in_"))]
    objects: list[str] = []
    ours = job_folder(backend.staging, job)
    if job.output_uri and job.output_uri.startswith(ours + "/outputs/"):
        objects += backend.gcs.list_all(job.output_uri)
    if input_too and job.input_digest:
        base = f"{ours}/inputs/{job.input_digest}"
        objects += [uri for uri in (f"{base}.jsonl", f"{base}.index.jsonl")
                    if backend.gcs.exists(uri)]
    if not dry_run:
        backend.leases.check()  # under a lock another apply took from us: touch nothing
        for table in tables:
            backend.bq.delete_table(table)
        for uri in objects:
            backend.gcs.delete(uri)
        backend.client(region_of(job.name)).delete(job.name)
    return [*(f"bq://{t}" for t in tables), *objects, job.name]

"""The record beside a Cloud Storage or BigQuery destination (an object under staging/_collected/,
shared by every project writing that destination): the jobs collected into it, with the
destination's version then — a destination changed behind batchrun's back is collected again,
never paid again — and the failed jobs `batchrun retry` set aside. Knows nothing of plans."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from runner.spec import DestinationKind, DestinationSpec


def _uri(backend: Any, dest: DestinationSpec) -> str:
    key = hashlib.sha256(f"{dest.kind}:{dest.location}".encode()).hexdigest()[:24]
    return f"{backend.staging}/_collected/{key}.json"


def _stamp(backend: Any, dest: DestinationSpec) -> Any:
    if dest.kind is DestinationKind.BIGQUERY:
        return backend.bq.created(dest.location)
    return backend.gcs.generation(dest.location + "results.jsonl")


def collected(backend: Any, dest: DestinationSpec) -> set[str]:
    data = backend.gcs.read_json(_uri(backend, dest))
    if not data or data.get("stamp") != _stamp(backend, dest):
        return set()  # the destination changed behind our back: re-collect, never re-pay
    return set(data.get("jobs", ()))


def forgiven(backend: Any, dest: DestinationSpec) -> set[str]:
    data = backend.gcs.read_json(_uri(backend, dest))
    return set((data or {}).get("forgiven", ()))


def forgive(backend: Any, dest: DestinationSpec, names: Iterable[str]) -> None:
    uri = _uri(backend, dest)
    data = backend.gcs.read_json(uri) or {"stamp": _stamp(backend, dest), "jobs": []}
    data["forgiven"] = sorted(set(data.get("forgiven", ())) | set(names))
    backend.gcs.write_json(uri, data)


def written(backend: Any, dest: DestinationSpec, jobs: Iterable[str]) -> None:
    """After the destination was written: the jobs now collected into it, at its new version."""
    backend.gcs.write_json(_uri(backend, dest), {"stamp": _stamp(backend, dest),
                                                 "jobs": sorted(set(jobs)),
                                                 "forgiven": sorted(forgiven(backend, dest))})

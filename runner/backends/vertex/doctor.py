"""`batchrun doctor` for the vertex backend: each thing a first real run needs, checked by asking
the service, one Finding (ok or not, with the fix) each. Reads only; with --canary (write_probe)
also one test object in the staging bucket, written with a precondition and removed at once."""

from __future__ import annotations

import functools
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from runner.backends.base import Finding
from runner.backends.stores.gcs import split
from runner.backends.vertex import access
from runner.backends.vertex.explain import explain
from runner.backends.vertex.jobs import parse_job
from runner.backends.vertex.listing import MANAGED_FILTER
from runner.errors import BatchrunError

UNKNOWN_FIX = "run `batchrun --debug doctor` for the whole error"


def _guard(what: str, check: Callable[[], list[Finding]]) -> list[Finding]:
    """A check that raised is one ✗ with its own words and the fix for its cause (explain's: no
    credentials, a disabled API, a missing permission...), never a traceback or a guessed fix."""
    try:
        return check()
    except BatchrunError as exc:
        hint = next((d.hint for d in exc.diagnostics if d.hint), None)
        return [Finding(False, f"{what}: {exc}", hint or UNKNOWN_FIX)]
    except Exception as exc:
        found = explain(exc)
        if found is not None:
            return [Finding(False, f"{what}: {found.summary}", found.hint or UNKNOWN_FIX)]
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return [Finding(False, f"{what}: {first[:200]}", UNKNOWN_FIX)]


def credentials() -> Finding:
    if os.environ.get("BATCHRUN_VERTEX_ENDPOINT"):
        return Finding(True, "credentials: none needed (emulators at "
                             f"{os.environ['BATCHRUN_VERTEX_ENDPOINT']})")
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        found, project = google.auth.default()
    except DefaultCredentialsError:
        return Finding(False, "credentials: none found (Application Default Credentials)",
                       "run `gcloud auth application-default login`, or set "
                       "GOOGLE_APPLICATION_CREDENTIALS to a service account key file")
    who = (getattr(found, "service_account_email", None) or getattr(found, "account", None)
           or type(found).__name__)
    how = ("GOOGLE_APPLICATION_CREDENTIALS" if os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
           else "Application Default Credentials")
    return Finding(True, f"credentials: {who} (from {how}"
                         + (f", default project {project})" if project else ")"))


def staging(gcs: Any, staging_uri: str, *, write_probe: bool = False) -> list[Finding]:
    """The staging bucket: there, where, and what this identity may do in it — asked of Cloud
    Storage, nothing written; with `write_probe` (doctor --canary) a test object is written
    under the project's folder with a precondition and removed at once."""
    from google.api_core.exceptions import Forbidden

    bucket_name, _ = split(staging_uri)
    where = f"staging bucket gs://{bucket_name}"
    found: list[Finding] | None
    try:
        bucket = gcs.client.lookup_bucket(bucket_name)
    except Forbidden:  # the permissions below say so: storage.buckets.get is one of them
        bucket, found = gcs.client.bucket(bucket_name), []
    else:
        found = [Finding(True, f"{where}: exists ({bucket.location or 'location unknown'})")] \
            if bucket is not None else None
    permissions = access.staging_permissions(bucket, where) if found is not None else None
    if found is None or permissions is None:
        return [Finding(False, f"{where}: does not exist",
                        f"create it: gcloud storage buckets create gs://{bucket_name} "
                        "--location REGION, or fix staging in batchrun.yaml")]
    return [*found, *permissions, *_probe(gcs, staging_uri, where, write_probe)]


def _probe(gcs: Any, staging_uri: str, where: str, write_probe: bool) -> list[Finding]:
    if not write_probe:
        return []
    probe = gcs.blob(f"{staging_uri.rstrip('/')}/_doctor/{secrets.token_hex(8)}")
    probe.upload_from_string(b"batchrun doctor", if_generation_match=0)
    probe.delete()
    return [Finding(True, f"{where}: writable (a test object was written and removed)")]


def datasets(bq: Any, wanted: Mapping[str, str], tables: Mapping[str, str]) -> list[Finding]:
    """Each dataset (name -> the region of the job using it) read, never written: there, and in
    the jobs' region; then what this identity may do with each table batchrun reads or writes."""
    from google.api_core.exceptions import Forbidden

    out = []
    for dataset, region in sorted(wanted.items()):
        try:
            location = bq.dataset_location(dataset)
        except Forbidden:
            out.append(Finding(False, f"dataset {dataset}: this identity may not read its "
                                      "metadata (bigquery.datasets.get)",
                               f"grant roles/bigquery.dataViewer on {dataset} (apply needs "
                               "roles/bigquery.dataEditor)"))
            continue
        if location is None:
            out.append(Finding(False, f"dataset {dataset}: does not exist",
                               f"create it in {region}: bq mk --location {region} {dataset}"))
        elif location.lower() != region.lower():
            out.append(Finding(False, f"dataset {dataset}: in {location}, its jobs run in {region}",
                               f"use a dataset in {region}, or run the manifest in "
                               f"{location.lower()} (spec.region)"))
        else:
            out.append(Finding(True, f"dataset {dataset}: exists, in {location}"))
    return out + access.table_permissions(bq, tables)


def _running(backend: Any, region: str, max_concurrent_jobs: int) -> list[Finding]:
    jobs = [j for j in map(parse_job, backend.list_region(region, MANAGED_FILTER))
            if j.state.in_flight]
    free = len(jobs) < max_concurrent_jobs
    return [Finding(free, f"Vertex AI in {region}: answers; {len(jobs)} of "
                          f"{max_concurrent_jobs} batch jobs running",
                    None if free else "wait for them, or ask for more quota")]


def checkup(backend: Any, regions: Sequence[str], wanted: Mapping[str, str],
            max_concurrent_jobs: int, *, tables: Mapping[str, str],
            write_probe: bool) -> list[Finding]:
    found = _guard("credentials", lambda: [credentials()])
    out = [*found, Finding(True, f"project: {backend.settings.project}")]
    services: list[tuple[str, Callable[[], list[Finding]]]] = [
        (f"Vertex AI in {region}", functools.partial(_running, backend, region,
                                                     max_concurrent_jobs))
        for region in regions]
    services.append(("Cloud Storage", lambda: staging(backend.gcs, backend.base,  # its folder
                                                      write_probe=write_probe)))
    if wanted or tables:
        services.append(("BigQuery", lambda: datasets(backend.bq, wanted, tables)))
    if not all(f.ok for f in found):  # every service would refuse: one cause, said once
        return out + [Finding(False, f"{what}: not checked without credentials (see the first "
                                     "line)") for what, _ in services]
    for what, check in services:
        out += _guard(what, check)
    return out

"""`batchrun doctor`: what a first real run needs, checked — the backend's services, staging and
datasets, and each manifest's model in its region against the catalogue. Reads only; the canary
(a job that costs money) is handson's."""

from __future__ import annotations

from runner import catalog
from runner.backends.base import BackendReader, Finding
from runner.spec import DestinationKind, Manifest, Settings, SourceKind


def datasets_of(manifests: tuple[Manifest, ...]) -> dict[str, str]:
    """Every BigQuery dataset the manifests read or write -> the region of the job using it."""
    out: dict[str, str] = {}
    for m in manifests:
        tables = ([m.source.location] if m.source.kind is SourceKind.BIGQUERY
                  and not m.source.is_query else [])
        if m.destination.kind is DestinationKind.BIGQUERY:
            tables.append(m.destination.location)
        for table in tables:
            if m.region:
                out[".".join(table.split(".")[:2])] = m.region
    return out


def model_finding(m: Manifest) -> Finding:
    lifecycle = catalog.lifecycle_problem(m.model)
    if lifecycle is not None:
        return Finding(False, f"{m.name}: {lifecycle[0]}", lifecycle[1])
    regions = catalog.batch_regions(m.model)
    if not regions:
        return Finding(False, f"{m.name}: {m.model.short} is not in batchrun's catalogue, so its "
                              "batch regions and price are unknown",
                       "check the model garden; give its price under pricing: in batchrun.yaml")
    if m.region not in regions:
        return Finding(False, f"{m.name}: {m.model.base} runs batch jobs in {', '.join(regions)}, "
                              f"not in {m.region}", f"set spec.region: {regions[0]}")
    return Finding(True, f"{m.name}: {m.model.short} runs batch jobs in {m.region}")


def doctor(manifests: tuple[Manifest, ...], reader: BackendReader,
           settings: Settings) -> list[Finding]:
    regions = sorted({m.region for m in manifests if m.region})
    findings = reader.checkup(regions, datasets_of(manifests), settings.quota.max_concurrent_jobs)
    if reader.regional:
        findings += [model_finding(m) for m in manifests]
    return findings

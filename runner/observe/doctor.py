"""`batchrun doctor`: what a first real run needs, checked — the backend's services, staging and
datasets, and each manifest's model in its region against the catalogue. Reads only; the canary
(a job that costs money) is handson's."""

from __future__ import annotations

from collections import Counter

from runner.backends.base import BackendReader, Finding, RemoteJob
from runner.errors import BatchrunError, n
from runner.models import catalog
from runner.project.settings import new_project_id
from runner.spec import DestinationKind, Manifest, Settings, SourceKind

BEFORE_IDS = "(jobs made before project ids)"  # how doctor names jobs without a project label


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
    if lifecycle is not None:  # a retired model fails its jobs; a deprecated or unconfirmed one may run
        retired = (catalog.entry(m.model) or {}).get("status") == "retired"
        return Finding(not retired, f"{m.name}: {lifecycle[0]}", lifecycle[1], warn=not retired)
    regions = catalog.batch_regions(m.model)
    if not regions:
        return Finding(False, f"{m.name}: {m.model.short} is not in batchrun's catalogue, so its "
                              "batch regions and price are unknown",
                       "check the model garden; give its price under pricing: in batchrun.yaml")
    if m.region not in regions and catalog.regions_open(m.model):
        return Finding(True, f"{m.name}: {m.model.short} runs batch jobs in any region serving "
                             f"it; batchrun has seen {', '.join(regions)}, not yet {m.region}",
                       "a job that Vertex refuses there fails at create: set spec.region to one "
                       "of those", warn=True)
    if m.region not in regions:
        return Finding(False, f"{m.name}: {m.model.base} runs batch jobs in {', '.join(regions)}, "
                              f"not in {m.region}", f"set spec.region: {regions[0]}")
    return Finding(True, f"{m.name}: {m.model.short} runs batch jobs in {m.region}")


def id_finding(settings: Settings) -> Finding | None:
    """The project's id, or the advice to write one. None for a local project without one: its
    jobs are in its own .batchrun/, where no other project's are."""
    folder = f"{settings.staging.rstrip('/')}/{settings.project_label}/" if settings.staging else None
    if settings.project_id is not None:
        return Finding(True, f"project id: {settings.project_id} (labels this project's jobs"
                             + (f"; its files are under {folder})" if folder else ")"))
    if settings.backend == "local":
        return None
    return Finding(True, f"project id: batchrun.yaml has none; this project's jobs are labelled "
                         f"{settings.project_label}, derived from staging {settings.staging}",
                   f"write `id: {new_project_id(settings.root)}` into batchrun.yaml (jobs made "
                   "until then stay this project's): projects sharing a staging prefix without "
                   "ids cannot be told apart", warn=True)


def neighbour_findings(manifests: tuple[Manifest, ...], reader: BackendReader,
                       settings: Settings) -> list[Finding]:
    """The other batchrun projects whose jobs share the job listing (and quota) with this one, by
    region; and a warning for each that shares this staging prefix or a manifest name."""
    try:
        reader.list_jobs()
    except BatchrunError:  # the checkup's lines already say why the jobs cannot be listed
        return []
    others = reader.foreign_jobs()
    out = []
    by_region: dict[str, Counter[str]] = {}
    for job in others:
        by_region.setdefault(job.region or "", Counter())[job.project or BEFORE_IDS] += 1
    for region, counts in sorted(by_region.items()):
        named = ", ".join(f"{p} ({n(c, 'job')})" for p, c in sorted(counts.items()))
        out.append(Finding(True, f"other batchrun projects in {region or 'this project'}: "
                                 f"{named}"))
    staging = settings.staging.rstrip("/") + "/" if settings.staging else None
    names = {m.name for m in manifests}
    projects: dict[str, list[RemoteJob]] = {}
    for job in others:
        projects.setdefault(job.project or BEFORE_IDS, []).append(job)
    for project, jobs in sorted(projects.items()):
        if staging and any((j.input_uri or "").startswith(staging) for j in jobs):
            out.append(Finding(True, f"{project} shares this staging prefix ({settings.staging})",
                               "safe while the ids differ (each project's files are under its "
                               "own id), but a prefix of its own keeps retention, gc and "
                               "permissions apart too", warn=True))
        shared = sorted({j.manifest_name for j in jobs} & names)
        if shared:
            out.append(Finding(True, f"{project} has "
                                     + (f"a manifest named {shared[0]}" if len(shared) == 1
                                        else f"manifests named {', '.join(shared)}") + " too",
                               "safe while the ids differ: jobs are told apart by project; "
                               "a name of its own keeps `batchrun status` and the console "
                               "readable", warn=True))
    return out


def tables_of(manifests: tuple[Manifest, ...]) -> dict[str, str]:
    """Every BigQuery table the manifests read ("read") or write ("write"); a query's tables are
    the query's to name, and BigQuery checks them when it runs it."""
    out: dict[str, str] = {}
    for m in manifests:
        if m.source.kind is SourceKind.BIGQUERY and not m.source.is_query:
            out.setdefault(m.source.location, "read")
        if m.destination.kind is DestinationKind.BIGQUERY:
            out[m.destination.location] = "write"
    return out


def doctor(manifests: tuple[Manifest, ...], reader: BackendReader, settings: Settings, *,
           write_probe: bool = False) -> list[Finding]:
    """Reads only, but for `write_probe` (doctor --canary): a test object in staging."""
    regions = sorted({m.region for m in manifests if m.region})
    findings = reader.checkup(regions, datasets_of(manifests), settings.quota.max_concurrent_jobs,
                              tables=tables_of(manifests), write_probe=write_probe)
    found = id_finding(settings)
    findings += [*([found] if found else []), *neighbour_findings(manifests, reader, settings)]
    if reader.regional:
        findings += [model_finding(m) for m in manifests]
    return findings

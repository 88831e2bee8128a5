"""The hands-on writes a user asks for by name — `retry`, `cancel`, `import`, `gc`, the doctor's
canary — carried out like apply's own: under the manifest's locks, through apply's collect. Part
of apply, the only writer."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from runner import identity
from runner.answers import collect
from runner.answers.outputs import parse_line
from runner.answers.result import Status
from runner.applying.collector import collect_finished
from runner.applying.executor import job_request
from runner.applying.litter import litter
from runner.applying.report import ApplyReport, quiet
from runner.applying.writer import Writer
from runner.backends.base import BackendReader, Finding, IndexEntry, JobState, RemoteJob
from runner.errors import BatchrunError
from runner.events import Listener
from runner.identity import INPUT_LABEL, MANAGED_LABEL, MANAGED_VALUE, NAME_LABEL
from runner.ledger.jobfailures import failures_of
from runner.ledger.rowpass import read_ledger, rendered_rows, rerun_asked
from runner.rows import wireid
from runner.spec import Family, Manifest, Settings


@dataclass
class RetryReport:
    forgiven: list[str] = field(default_factory=list)  # ended jobs that no longer count to a block
    was_blocked: bool = False
    rows_reset: int = 0  # failed rows given a fresh set of attempts
    older_rerun: int = 0  # answers kept from older specs marked to be re-run


def _fresh_attempts(row: dict[str, Any], spec_hash: str) -> dict[str, Any] | None:
    """The row with its failures under `spec_hash` given fresh attempts, or None if it has none."""
    if row.get("status") == Status.FAILED and row.get("spec_hash") == spec_hash and row.get(
            "attempts"):
        return {**row, "attempts": 0}
    retry = row.get("retry")
    if isinstance(retry, dict) and retry.get("spec_hash") == spec_hash and retry.get("attempts"):
        return {**row, "retry": {**retry, "attempts": 0}}
    return None


def retry(manifest: Manifest, writer: Writer, settings: Settings, *, failed: bool,
          say: Listener = quiet, older_specs: bool = False,
          limit: int | None = None) -> RetryReport:
    """After the user fixed a cause: set aside the job-level failures that block the manifest and,
    with `failed`, give rows out of attempts a fresh set. Both are recorded beside the destination,
    so the ledger stays the record; nothing is sent here."""
    report = RetryReport()
    backend = writer.reader
    with writer.locked(manifest):
        jobs = backend.list_jobs(manifest.name)
        collected = collect_finished(manifest, writer, jobs, ApplyReport(), say)
        forgiven = backend.forgiven_jobs(manifest.destination)
        failures = failures_of(manifest, jobs, settings, forgiven, datetime.now(UTC), backend,
                               read_ledger(manifest, backend, jobs, settings))
        report.was_blocked = failures.blocked
        # Every ended job of the manifest so far: none of them counts toward a block any more.
        report.forgiven = sorted(j.name for j in jobs if j.state.finished and j.name not in forgiven)
        if report.forgiven:
            writer.forgive(manifest.destination, report.forgiven)
        if failed and any(_fresh_attempts(row, manifest.spec_hash) is not None
                          for row in backend.read_destination(manifest.destination)):
            def rows() -> Iterator[tuple[dict[str, Any], bool]]:
                for row in backend.read_destination(manifest.destination):
                    fresh = _fresh_attempts(row, manifest.spec_hash)
                    if fresh is not None:
                        report.rows_reset += 1
                    yield (row, False) if fresh is None else (fresh, True)

            writer.write(manifest.destination, rows(), collected=collected)
        if older_specs:
            _rerun_older(manifest, writer, report, limit, collected)
    return report


def _rerun_older(manifest: Manifest, writer: Writer, report: RetryReport,
                 limit: int | None, collected: set[str]) -> None:
    """Mark up to `limit` answers kept from older specs (on_change: forward) to be re-run under
    the current one: the answer stays until the new one replaces it."""
    backend = writer.reader

    def rows() -> Iterator[tuple[dict[str, Any], bool]]:
        for row in backend.read_destination(manifest.destination):
            older = (row.get("status") == Status.SUCCEEDED
                     and row.get("spec_hash") != manifest.spec_hash
                     and not rerun_asked(row, manifest.spec_hash))
            if older and (limit is None or report.older_rerun < limit):
                report.older_rerun += 1
                yield {**row, "retry": {"spec_hash": manifest.spec_hash, "request_hash": None,
                                        "attempts": 0, "error": "re-run asked",
                                        "job": None, "finished_at": None}}, True
            else:
                yield row, False

    writer.write(manifest.destination, rows(), collected=collected)


@dataclass(frozen=True)
class CancelReport:
    """What `batchrun cancel` asked to stop, as the jobs were just before; iterates as the names
    cancelled (what cancel always returned)."""

    spec_hash: str  # the manifest's current spec
    cancelled: tuple[RemoteJob, ...] = ()
    previews_left: tuple[RemoteJob, ...] = ()  # previews still running: only --preview stops them

    def __iter__(self) -> Iterator[str]:
        return iter(j.name for j in self.cancelled)

    def __len__(self) -> int:
        return len(self.cancelled)


def cancel_running(manifest: Manifest, writer: Writer, *, previews: bool = False) -> CancelReport:
    """`batchrun cancel`: under its locks, ask each of the manifest's running jobs — of its current
    spec and older ones — to stop. A preview's job only with `previews`: a pull request's preview
    may be what someone waits on (its answers count once that spec is applied)."""
    with writer.locked(manifest):
        running = [j for j in writer.reader.list_jobs(manifest.name, in_flight_only=True)
                   if j.state is not JobState.CANCELLING]  # asked already: nothing to ask again
        chosen = tuple(j for j in running if previews or not j.preview)
        for job in chosen:
            writer.cancel(job.name)
    return CancelReport(manifest.spec_hash, chosen,
                        tuple(j for j in running if j not in chosen))


def import_job(manifest: Manifest, writer: Writer, settings: Settings, job_name: str) -> int:
    """`batchrun import`: merge the answers of a job made outside batchrun for rows of this
    manifest's source into its destination, so they count as done. Returns how many."""
    backend = writer.reader
    job = backend.get_job(job_name)
    if not job.state.finished or job.output_uri is None:
        raise BatchrunError(f"job {job_name} is {job.state.short}; only a finished job with output "
                            "can be imported")
    model = identity.short_model(job.model)
    if job.model and model != manifest.model.short:
        # Its answers would stand as this model's: an answer is known by who made it.
        raise BatchrunError(f"job {job_name} ran {model}, {manifest.name} asks for "
                            f"{manifest.model.short}; its answers are not this manifest's")
    index = [IndexEntry(r.custom_id, r.request_hash,
                        {k: r.row.data.get(k) for k in manifest.passthrough},
                        source_fp=r.source_fp)
             for r in rendered_rows(manifest, backend, settings)]
    with writer.locked(manifest):
        updates: dict[str, list[dict[str, Any]]] = {}
        answered = {str(parse_line(line, manifest.family).custom_id)
                    for line in backend.read_output(job)}
        for row in collect.result_rows(manifest, job_name=job.name, job_spec_hash=manifest.spec_hash,
                                       finished_at=job.end_time or "",
                                       index=[e for e in index if e.custom_id in answered],
                                       output=backend.read_output(job), model=model,
                                       answered_by=job.answered_by):
            if row["status"] == Status.SUCCEEDED:
                updates[row["custom_id"]] = [row]
        merged = collect.merge_rows(backend.read_destination(manifest.destination), updates,
                                    manifest.spec_hash)
        done = backend.collected_jobs(manifest.destination)
        writer.write(manifest.destination, merged, collected=done | {job.name})
    return len(updates)


def gc(manifest: Manifest, writer: Writer, settings: Settings, *, dry_run: bool) -> list[str]:
    """`batchrun gc`: what apply removes after collecting, on demand (under the locks)."""
    if dry_run:
        return litter(manifest, writer, settings, dry_run=True)
    with writer.locked(manifest):
        return litter(manifest, writer, settings, dry_run=False)


CANARY_NAME = "doctor-canary"  # the name label of canary jobs: no manifest's, never collected


def _canary_rows(manifest: Manifest, backend: BackendReader,
                 settings: Settings) -> list[tuple[bytes, IndexEntry]] | None:
    """One ordinary request (the manifest's first row) and one built to be refused (max_tokens 0,
    or an empty embedding input), as the manifest would send them."""
    first = next(iter(rendered_rows(manifest, backend, settings)), None)
    if first is None:
        return None
    ok = orjson.loads(first.line)
    bad = orjson.loads(first.line)
    google = manifest.family in (Family.GEMINI, Family.GEMINI_EMBEDDINGS)
    prefix = wireid.PREFIX if google else ""
    key = "key" if "key" in ok else "custom_id"  # gemini-embedding's own id field
    ok[key], bad[key] = prefix + "canary-ok", prefix + "canary-refused"
    inner = bad.get("request") if "request" in bad else bad.get("body")
    if manifest.family is Family.GEMINI_EMBEDDINGS:
        if isinstance(inner, dict):
            inner["content"] = {"parts": [{"text": ""}]}
        else:
            bad["content"] = ""
    elif isinstance(inner, dict):
        if manifest.family is Family.OPENAI_EMBEDDINGS:
            inner["input"] = []
        elif manifest.family is Family.GEMINI:
            inner.setdefault("generationConfig", {})["maxOutputTokens"] = 0
        else:
            inner["max_tokens"] = 0
    return [(orjson.dumps(row), IndexEntry(row[key].removeprefix(prefix), row[key], {}))
            for row in (ok, bad)]


def canary(manifests: Sequence[Manifest], writer: Writer, settings: Settings, folder: Path,
           *, timeout: float, poll: float = 1.0) -> list[Finding]:
    """Per model family and destination kind in use: a two-row job, waited for; its raw output is
    saved to `folder` (the fixtures of tests/data/vertex-outputs/) and read back through the parser,
    naming any line it could not read. The job and its leftovers are removed after."""
    backend = writer.reader
    kinds: dict[tuple[Family, str], Manifest] = {}
    for m in manifests:
        kinds.setdefault((m.family, m.destination.kind.value), m)
    findings = []
    for (family, dest_kind), m in sorted(kinds.items(), key=lambda kv: str(kv[0])):
        what = f"canary {family.value} -> {dest_kind} ({m.name}, {m.model.short})"
        rows = _canary_rows(m, backend, settings)
        if rows is None:
            findings.append(Finding(False, f"{what}: the source has no row to send"))
            continue
        staged = writer.stage_rows(CANARY_NAME, rows)
        job = writer.create(replace(job_request(
            m, staged, f"batchrun-canary-{m.name}"[:128],
            {MANAGED_LABEL: MANAGED_VALUE, NAME_LABEL: CANARY_NAME, INPUT_LABEL: staged.digest}),
            manifest_name=CANARY_NAME))
        deadline = time.monotonic() + timeout
        while not job.state.finished and time.monotonic() < deadline:
            time.sleep(poll)
            job = backend.get_job(job.name)
        if not job.state.finished:
            findings.append(Finding(False, f"{what}: {job.name} still {job.state.short} after "
                                           f"{timeout:.0f} s", "run doctor --canary again later"))
            continue
        raw = list(backend.read_output(job))
        folder.mkdir(parents=True, exist_ok=True)
        saved = folder / f"{family.value}-{dest_kind}.jsonl"
        saved.write_bytes(b"".join((line if isinstance(line, bytes) else orjson.dumps(
            line, default=str)) + b"\n" for line in raw))
        parsed = [parse_line(line, family) for line in raw]
        unreadable = [i for i, p in enumerate(parsed, start=1) if p.custom_id is None]
        by_id = {p.custom_id: p for p in parsed}
        ok_row, bad_row = by_id.get("canary-ok"), by_id.get("canary-refused")
        fine = (not unreadable and ok_row is not None and ok_row.ok and bad_row is not None
                and not bad_row.ok)
        detail = (f"{job.state.short}; {len(raw)} lines saved to {saved}"
                  + (f"; lines the parser could not read: {unreadable}" if unreadable else "")
                  + ("" if ok_row is not None and ok_row.ok else "; the ordinary row has no answer")
                  + ("" if bad_row is not None and not bad_row.ok
                     else "; the refused row was not reported as refused"))
        findings.append(Finding(fine, f"{what}: {detail}", None if fine else
                                "look at the saved lines; copy them to tests/data/vertex-outputs/ "
                                "and teach runner/answers/outputs.py their shape"))
        writer.remove(job, input_too=True, dry_run=False)
    return findings

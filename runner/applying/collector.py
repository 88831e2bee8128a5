"""Finished jobs' answers into the destination: collect (each uncollected job merged, in one write)
and reshape (answers re-derived from stored ones, unpaid, in one write), each write a Writer step.
Decides nothing about which jobs or rows: the plan and the row pass did.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import orjson

from runner import crashpoints
from runner.answers import collect
from runner.answers.result import Status
from runner.answers.spool import ResultSpool
from runner.applying.report import ApplyReport, quiet
from runner.applying.writer import Writer
from runner.backends.base import RemoteJob
from runner.events import Collected, Listener, Refreshed, Reshaped
from runner.ledger.rowpass import job_results, row_key
from runner.planning.prepared import Prepared
from runner.rows.idfilter import IdFilter
from runner.spec import Manifest


def collect_finished(manifest: Manifest, writer: Writer, jobs: Sequence[RemoteJob],
                     report: ApplyReport, say: Listener = quiet,
                     ids: IdFilter | None = None, results: ResultSpool | None = None,
                     done: set[str] | None = None) -> set[str]:
    """Merge every finished, uncollected job of the manifest into its destination, in one write;
    the jobs collected now, those before included.

    `ids` are the destination's ids as the row pass read them (else they are read here), `results`
    the result rows it parsed (the jobs it did not parse are parsed here), `done` the jobs
    collected before, read under the lock by the caller (else here). Answers for ids the
    destination surely lacks are spooled and appended, without reading the destination again;
    only answers that may meet an existing row (or another answer) are merged the slow way.
    """
    backend = writer.reader
    done = backend.collected_jobs(manifest.destination) if done is None else done
    todo = sorted((j for j in jobs if j.manifest_name == manifest.name and j.state.finished
                   and j.name not in done and j.belongs_to(manifest.spec_hash)),
                  key=lambda j: j.end_time or j.create_time or "")
    if not todo:
        return done
    if ids is None:
        ids = IdFilter()
        for row in backend.read_destination(manifest.destination, ("custom_id",)):
            ids.check_and_add(str(row.get("custom_id")))
    updates: dict[str, list[dict[str, Any]]] = {}
    tally = collect.Tally()
    with tempfile.TemporaryFile() as spool:
        for job in todo:  # oldest first, so a newer answer is merged after an older one
            rows = (results.replay(job.name, tally) if results is not None and job.name in results
                    else job_results(manifest, backend, job, tally))
            for row in rows:
                report.rows_collected += 1
                if ids.check_and_add(row["custom_id"]):
                    updates.setdefault(row["custom_id"], []).append(row)
                else:
                    spool.write(orjson.dumps(row) + b"\n")
        spool.seek(0)
        appended = (orjson.loads(line) for line in spool)
        collected = done | {j.name for j in todo}
        crashpoints.reached("collect")
        if updates:
            writer.write(manifest.destination, collect.merge_rows(
                backend.read_destination(manifest.destination), updates, manifest.spec_hash,
                appended=appended), collected=collected)
        else:
            writer.write(manifest.destination, ((row, True) for row in appended),
                         collected=collected, append=True)
    crashpoints.reached("collected")
    report.collected.extend(j.name for j in todo)
    report.rows_to_do_again += tally.to_do_again
    say(Collected(manifest.name, len(todo),
                  tuple(sorted({j.state.short for j in todo} - {"succeeded"})),
                  tally.answered, tally.refused, tally.to_do_again))
    return collected


def _refreshed(planned: tuple[str, str, str] | None, row: Mapping[str, Any]) -> str | None:
    """The fingerprint to write beside this stored row, if it is still the answer the plan knew
    (by its request hash, or by its older fingerprint): a collect since may have replaced it."""
    if planned is None:
        return None
    fp, request_hash, older = planned
    if (request_hash and row.get("request_hash") != request_hash) or (
            older and row.get("source_fp") != older):
        return None
    return fp


def reshape(manifest: Manifest, writer: Writer, prepared: Prepared, report: ApplyReport,
            collected: set[str], say: Listener = quiet) -> None:
    """Re-derive, from their stored answers, the rows the plan found answered with the very
    request they would be sent now by the same answerer: only how answers are shaped (the
    response block, the passthrough columns) changed; and write the source rows' fingerprints
    beside the answers the plan knew by their request alone (Prepared.refresh). Nothing is sent;
    one rewrite of the destination."""
    backend = writer.reader
    done = refused = refreshed = 0

    def rows() -> Iterator[tuple[dict[str, Any], bool]]:
        nonlocal done, refused, refreshed
        for row in backend.read_destination(manifest.destination):
            custom_id = str(row.get("custom_id"))
            key = row_key(custom_id, str(row.get("request_hash")))
            passthrough = prepared.reshape.get(key)
            fp = _refreshed(prepared.refresh.get(custom_id), row)
            if fp is not None and passthrough is None and row.get("status") == Status.SUCCEEDED:
                refreshed += 1
                yield {**row, "source_fp": fp}, True
                continue
            if passthrough is None or row.get("status") != Status.SUCCEEDED:
                yield row, False
                continue
            new = row if row.get("spec_hash") == manifest.spec_hash else collect.reshaped(
                manifest, row)
            new = collect.with_passthrough(new, passthrough)
            if fp is not None:
                new["source_fp"] = fp
            done += new["spec_hash"] == manifest.spec_hash
            refused += new["spec_hash"] != manifest.spec_hash
            yield new, True

    writer.write(manifest.destination, rows(), collected=collected)
    report.reshaped += done
    if prepared.reshape:
        say(Reshaped(manifest.name, done, refused))
    if refreshed:
        say(Refreshed(manifest.name, refreshed))

"""Edge: turns diagnostics, apply's events, status and results into text for people (the plan's
words are planview's). No logic, no I/O beyond the console it is given."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import Any, BinaryIO, TextIO

import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text

from runner.answers.result import State, Status
from runner.backends.base import Finding
from runner.errors import Diagnostic, n
from runner.events import (
    Cancelled,
    Collected,
    Created,
    Event,
    Holding,
    LockWait,
    QuotaFull,
    Refreshed,
    Reshaped,
    SourceMoved,
)
from runner.redact import redact
from runner.views.plan import money


def diagnostics_text(diags: Iterable[Diagnostic]) -> str:
    """Terraform-style blocks: severity and summary, then where, then what to do."""
    blocks = []
    for d in diags:
        head = f"{d.severity.value.capitalize()}: {d.summary}"
        lines = [head]
        where = []
        if d.file:
            where.append(f"in {d.file}" + (f", line {d.line}" if d.line else ""))
        if d.path:
            where.append(f"at {d.path}")
        if where:
            lines.append("  " + ", ".join(where))
        if d.hint:
            lines.append(f"  Hint: {d.hint}")
        blocks.append("\n".join(lines))
    return redact("\n\n".join(blocks)) + ("\n" if blocks else "")


def event_text(e: Event) -> str:
    """One line of what apply just did, as it goes."""
    match e:
        case Created():
            return f"{e.manifest}: created {e.job} with {n(e.rows, 'row')}"
        case Collected():
            how = f" ({', '.join(e.ended)})" if e.ended else ""
            again = (f"; {n(e.to_do_again, 'unanswered row')} to do again, no attempt used"
                     if e.to_do_again else "")
            return (f"{e.manifest}: collected {n(e.jobs, 'job')}{how}: {e.answered:,} answered, "
                    f"{e.refused:,} refused by the model{again}")
        case Cancelled():
            return f"{e.manifest}: cancelled {e.job}" + (" (manifest removed, --prune)"
                                                        if e.orphan else "")
        case QuotaFull():
            return (f"{e.manifest}: {e.detail or 'job quota full'}; the remaining rows wait for "
                    "the next apply")
        case Refreshed():
            return (f"{e.manifest}: refreshed the fingerprints of {n(e.rows, 'answer')}, "
                    "nothing sent")
        case Reshaped():
            refused = (f"; {n(e.refused, 'stored answer')} the new response rules refuse, sent "
                       "again by the next apply" if e.refused else "")
            return (f"{e.manifest}: reshaped {n(e.rows, 'row')} from their stored answers, "
                    f"nothing sent{refused}")
        case SourceMoved():
            return (f"{e.manifest}: the source changed since the plan; only the rows the plan "
                    "showed were sent, the rest wait for the next plan")
        case LockWait():
            return f"waiting: {e.detail}"
        case Holding():
            why = ("Vertex failed the last job with INTERNAL (code 13), as it does for a "
                   "region's first job; waiting quota.internal_retry_delay" if e.internal else
                   f"the last job ended {e.state}: {e.error}; backing off "
                   "(quota.failure_backoff)")
            return (f"{e.manifest}: holding {n(e.rows, 'row')} until {e.until} UTC: {why}. "
                    "No job runs meanwhile; they are sent then")


def applied_text(report: Any, saved: bool = False) -> str:
    head = "Applied the saved plan" if saved else "Applied"
    return (f"{head}: {n(report.rows_sent, 'row')} sent in {n(len(report.created), 'job')}, "
            f"{n(len(report.collected), 'job')} collected, {len(report.cancelled):,} cancelled.")


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None) -> Table:
    out = Table(title=title, show_lines=False, header_style="bold")
    for col in columns:
        out.add_column(col, overflow="fold")
    for row in rows:
        # A multi-line message would break the table: each cell is one line.
        out.add_row(*(Text(" ".join(str(v).split())) if v is not None else Text("") for v in row))
    return out


def print_table(console: Console, columns: Sequence[str], rows: Iterable[Sequence[Any]],
                title: str | None = None) -> None:
    console.print(table(columns, rows, title))


def age_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


STATUS_COLUMNS = ("manifest", "job", "state", "spec", "progress", "age", "error")


def status_rows(statuses: Iterable[Any]) -> list[tuple[str, ...]]:
    """JobStatus records -> the cells of the status table."""
    return [(s.manifest, s.job.rsplit("/", 1)[-1], s.state,
             ("current" if s.current_spec else "old") + (" (preview)" if s.preview else ""),
             "-" if s.succeeded is None else f"{s.succeeded} ok / {s.failed or 0} failed",
             age_text(s.age_seconds), s.error or "") for s in statuses]


def usage_text(used: Any) -> str:
    """One manifest's tokens and cost actually used (an api.Usage)."""
    text = (f"{used.manifest}: {used.rows:,} answers used {used.input_tokens:,} input + "
            f"{used.output_tokens:,} output tokens, {money(used.cost)}")
    states = used.states
    if states:
        text += (f"; stored rows: {states.get('succeeded', 0):,} succeeded, "
                 f"{states.get('failed', 0):,} failed, {states.get('stale', 0):,} stale")
    return text


def cell(value: Any) -> str:
    """A result field as text: strings as they are, anything else as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


# The version of `status --json` and `results --json` documents: fields are only ever added.
JSON_FORMAT = 1


def status_json(jobs: Iterable[Any], usage: Iterable[Any]) -> str:
    """`status --json`: the jobs (api.JobStatus) and the tokens used (api.Usage), versioned."""
    doc = {"format_version": JSON_FORMAT, "jobs": [asdict(j) for j in jobs],
           "usage": [asdict(u) for u in usage]}
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode()


def results_json(rows: Iterable[Mapping[str, Any]], out: BinaryIO, name: str,
                 spec_hash: str) -> None:
    """`results --json`: one versioned document, its rows streamed (a destination may be big),
    the summary after them."""
    out.write(orjson.dumps({"format_version": JSON_FORMAT, "manifest": name,
                            "spec_hash": spec_hash})[:-1] + b', "rows": [')
    total = failed = stale = 0
    for row in rows:
        out.write((b",\n" if total else b"\n") + orjson.dumps(row))
        total += 1
        outcome = row.get("outcome")
        failed += outcome == State.FAILED
        stale += outcome == State.STALE
    summary = {"rows": total, "failed": failed, "stale": stale}
    out.write(b"\n], \"summary\": " + orjson.dumps(summary) + b"}\n")
    out.flush()


def results_jsonl(rows: Iterable[Mapping[str, Any]], out: BinaryIO) -> None:
    """`results --format jsonl`: one JSON object per row, streamed."""
    for row in rows:
        out.write(orjson.dumps(row) + b"\n")
    out.flush()


def results_csv(rows: Iterable[Mapping[str, Any]], out: TextIO) -> None:
    """`results --format csv`: the first row's fields as the header, JSON values as JSON text."""
    writer: csv.DictWriter[str] | None = None
    for row in rows:
        if writer is None:
            writer = csv.DictWriter(out, fieldnames=list(row), extrasaction="ignore")
            writer.writeheader()
        writer.writerow({k: cell(v) for k, v in row.items()})
    out.flush()


def results_view(console: Console, name: str, rows: Iterable[Any],
                 passthrough: Sequence[str]) -> str:
    """`batchrun results NAME`: the table (printed on `console`), then the summary and the first
    failures, returned as text. Rows come from api.results, each with its `outcome`."""
    table_rows, failed, stale = [], [], 0
    for row in rows:
        output = cell(row.get("output"))
        status = str(row.get("outcome") or row.get("status") or "")
        stale += status == "stale"
        table_rows.append([row.get("custom_id"), *(cell(row.get(k)) for k in passthrough),
                           status, str(row.get("spec_hash") or "")[:8],
                           str(row.get("answered_by") or ""),
                           output[:80] + ("…" if len(output) > 80 else "")])
        if status == Status.FAILED:
            failed.append(row)
    print_table(console, ["custom_id", *passthrough, "status", "spec", "answered by", "output"],
                table_rows, title=name)
    lines = [results_summary(len(table_rows), len(failed), stale)]
    lines += [f"  ! {row.get('custom_id')}: {' '.join(str(row.get('error')).split())} "
              f"(attempts: {_attempts(row)})" for row in failed[:20]]
    return "\n".join(lines) + "\n"


def _attempts(row: Mapping[str, Any]) -> Any:
    retry = row.get("retry")
    if row.get("status") != Status.FAILED and isinstance(retry, Mapping):
        return retry.get("attempts")  # failed beside an older answer: the retry counts them
    return row.get("attempts")


def results_summary(rows: int, failed: int, stale: int) -> str:
    text = f"{n(rows, 'row')}, {failed:,} failed"
    if stale:
        text += (f", {stale:,} stale (answered under an older spec or by another executor: the "
                 "next apply replaces them, or with on_change: forward keeps older specs' until "
                 "`batchrun retry NAME --older-specs`)")
    return text


def findings_text(findings: Iterable[Finding]) -> str:
    """`batchrun doctor`: ✓, ! (fine, but worth a look) or ✗ and what, then the fix under each !
    and ✗."""
    lines = []
    for f in findings:
        lines.append(f"{'✗' if not f.ok else '!' if f.warn else '✓'} {f.what}")
        if (not f.ok or f.warn) and f.fix:
            lines.append(f"    fix: {f.fix}")
    return redact("\n".join(lines)) + "\n"


def note_text(finding: Finding) -> str:
    """A doctor's finding said in passing, by `plan`."""
    return redact(f"note: {finding.what}" + (f"; {finding.fix}" if finding.fix else ""))


def cancel_text(name: str, report: Any) -> str:
    """`batchrun cancel`: each job asked to stop (name, spec, state), and the previews left."""
    def spec(job: Any) -> str:
        which = ("preview" if job.preview else "current" if job.spec_hash == report.spec_hash
                 else "older")
        return f"spec {job.spec_hash[:8] or '?'} ({which})"

    lines = [f"{name}: cancelling {n(len(report.cancelled), 'job')}"
             if report.cancelled else f"{name}: no running job to cancel"]
    lines += [f"  {j.name}  {spec(j)}  {j.state.short}" for j in report.cancelled]
    left = len(report.previews_left)
    if left:
        lines.append(f"{n(left, 'preview job')} left running; --preview cancels "
                     + ("it" if left == 1 else "them"))
    return "\n".join(lines)


def retry_text(name: str, was_blocked: bool, rows_reset: int, failed: bool,
               older: int | None = None) -> str:
    parts = [f"{name}: unblocked" if was_blocked else f"{name}: was not blocked"]
    if failed:
        parts.append(f"{n(rows_reset, 'failed row')} given a fresh set of attempts")
    if older is not None:
        parts.append(f"{n(older, 'answer')} from older specs to be re-run")
    if was_blocked or rows_reset or older:
        return "; ".join(parts) + ". Run `batchrun apply` to send them."
    return "; ".join(parts) + ": nothing to retry."

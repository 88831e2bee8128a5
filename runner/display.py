"""Edge: turns diagnostics, plans, status and results into text for people. No logic, no I/O beyond
the console it is given."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from runner.errors import Diagnostic
from runner.plan import ManifestPlan, Plan


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
    return "\n\n".join(blocks) + ("\n" if blocks else "")


_SYMBOL = {"create": "+", "replace": "~", "cancel": "-", "collect": "<", "wait": "…",
           "up-to-date": "=", "failed": "!", "running": "…"}


def _n(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _rows_text(m: ManifestPlan) -> str:
    r = m.rows
    parts = [f"{r.total:,} rows", f"{r.done:,} done"]
    if r.in_flight:
        parts.append(f"{r.in_flight:,} in flight")
    parts.append(f"{r.to_do:,} to do")
    if r.failed:
        parts.append(f"{r.failed:,} failed")
    return ", ".join(parts)


def plan_text(plan: Plan) -> str:
    lines = []
    width = max((len(m.name) for m in plan.manifests), default=0)
    for m in plan.manifests:
        symbol = _SYMBOL.get(m.actions[0] if m.actions else m.headline.split(":")[0], " ")
        lines.append(f"{symbol} {m.name.ljust(width)}  {m.headline}")
        tokens = f"; ~{m.input_tokens:,} input tokens to send" if m.input_tokens else ""
        lines.append(f"  {' ' * width}  {_rows_text(m)}{tokens}")
        lines.extend(f"  {' ' * width}  {note}" for note in m.notes)
        for custom_id, err in m.failures:
            lines.append(f"  {' ' * width}  ! {custom_id}: {err}")
    for orphan in plan.orphans:
        verb = "cancel" if orphan.cancel else "running, not in any manifest (use --prune to cancel)"
        lines.append(f"- {orphan.manifest_name}  {verb}: {orphan.job}")
    s = plan.summary()
    lines.append("")
    lines.append(
        f"Plan: {_n(s['rows_to_send'], 'row')} to send in {_n(s['jobs_to_create'], 'job')}, "
        f"{s['jobs_to_collect']} to collect, {s['jobs_to_cancel']} to cancel, "
        f"{_n(s['rows_waiting'], 'row')} waiting for a job slot. "
        f"{_n(s['up_to_date'], 'manifest')} up to date."
    )
    return "\n".join(lines) + "\n"


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None) -> Table:
    out = Table(title=title, show_lines=False, header_style="bold")
    for col in columns:
        out.add_column(col, overflow="fold")
    for row in rows:
        out.add_row(*(Text(str(v)) if v is not None else Text("") for v in row))
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
    return [(s.manifest, s.job.rsplit("/", 1)[-1], s.state, "current" if s.current_spec else "old",
             "-" if s.succeeded is None else f"{s.succeeded} ok / {s.failed or 0} failed",
             age_text(s.age_seconds), s.error or "") for s in statuses]

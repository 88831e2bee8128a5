"""Edge: `batchrun report` and `preview --html` as one self-contained HTML file — totals, inline SVG
charts, the rows as embedded JSON behind a searchable, paged table (runner/data/report.html). No
server, no network, no logic beyond layout."""

from __future__ import annotations

import html
import re
import secrets
from importlib import resources
from typing import Any

import orjson

from runner.answers.compare import Kind, Preview
from runner.errors import n
from runner.estimate import Estimate
from runner.observe.report import ReportData
from runner.views.plan import money

BAR_W, BAR_H, LABEL_W = 360, 18, 160
_SLOT = re.compile(r"__(TITLE|SUBTITLE|TOTALS|CHARTS|EXTRA|NONCE|DATA)__")


def _template() -> str:
    return (resources.files("runner") / "data" / "report.html").read_text(encoding="utf-8")


def _json(value: Any) -> str:
    """JSON safe inside a script element: no "<" at all ("</script>" would end it, "<!--" would
    swallow the page), nor "&" or ">"; JSON reads the escapes back as the same text."""
    text = orjson.dumps(value).decode()
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _bars(title: str, items: list[tuple[str, float]], fmt: str = "{:,.0f}") -> str:
    """A horizontal bar chart as inline SVG."""
    if not items:
        return ""
    top = max(v for _, v in items) or 1
    height = BAR_H * len(items) + 8
    bars = []
    for k, (label, value) in enumerate(items):
        y = 4 + k * BAR_H
        w = max(1.0, (BAR_W - 80) * value / top)
        shown = label if len(label) <= 24 else label[:23] + "…"
        bars.append(
            f'<text x="{LABEL_W - 6}" y="{y + 13}" text-anchor="end">{html.escape(shown)}</text>'
            f'<rect x="{LABEL_W}" y="{y + 2}" width="{w:.1f}" height="{BAR_H - 5}" fill="#4c78a8">'
            f"<title>{html.escape(label)}: {fmt.format(value)}</title></rect>"
            f'<text x="{LABEL_W + w + 4:.1f}" y="{y + 13}">{fmt.format(value)}</text>')
    return (f'<figure><figcaption><b>{html.escape(title)}</b></figcaption>'
            f'<svg role="img" width="{LABEL_W + BAR_W}" height="{height}">{"".join(bars)}</svg>'
            "</figure>")


def _cards(pairs: list[tuple[str, str]]) -> str:
    return "".join(f'<div class="card"><b>{html.escape(v)}</b>{html.escape(k)}</div>'
                   for k, v in pairs)


def _page(title: str, subtitle: str, cards: str, charts: str, extra: str,
          columns: list[str], rows: list[list[Any]]) -> str:
    values = {"TITLE": html.escape(title), "SUBTITLE": html.escape(subtitle), "TOTALS": cards,
              "CHARTS": charts, "EXTRA": extra, "NONCE": secrets.token_urlsafe(16),
              "DATA": _json({"columns": columns, "rows": rows})}
    # One pass: text put in is never searched again (an answer may say "__DATA__").
    return _SLOT.sub(lambda m: values[m.group(1)], _template())


def report(data: ReportData) -> str:
    t = data.totals
    cards = [("rows in the destination", f"{t['rows']:,}"), ("answered", f"{t['answered']:,}"),
             ("failed", f"{t['failed']:,}"), ("stale (older spec)", f"{t['stale']:,}")]
    if t.get("not_yet") is not None:
        cards.append(("in the source, not yet answered", f"{t['not_yet']:,}"))
    if t.get("gone"):
        cards.append(("answers whose row left the source", f"{t['gone']:,}"))
    cards += [("input tokens", f"{t['input_tokens']:,}"), ("output tokens", f"{t['output_tokens']:,}"),
              ("cost (batch prices)", money(t["cost"]) if t["cost"] is not None else "unknown")]
    charts = _bars("Answers by label", [(k, float(v)) for k, v in data.labels or []])
    if any(d["cost"] is not None for d in data.days):
        charts += _bars("Cost by day (USD)", [(d["day"], d["cost"] or 0.0) for d in data.days],
                        "{:,.4f}")
    else:
        charts += _bars("Rows by day", [(d["day"], float(d["rows"])) for d in data.days])
    return _page(f"batchrun report: {data.name}",
                 f"{data.model} · spec {data.spec_hash[:12]} · one row per id as stored in the "
                 "destination; click a row for its answer and prompt",
                 _cards(cards), charts, "", data.columns, data.rows)


def _diff_html(diff: tuple[tuple[str, str], ...]) -> str:
    tag = {"=": "{}", "-": "<del>{}</del>", "+": "<ins>{}</ins>"}
    return "".join(tag[op].format(html.escape(text)) for op, text in diff)


def preview(p: Preview, full: Estimate | None = None) -> str:
    c = p.comparison
    cards = [("rows sampled", f"{p.sampled:,}"), ("sent now", f"{p.sent:,}"),
             ("from an earlier preview", f"{p.reused:,}"),
             ("preview cost", money(p.estimate.cost))]
    if full is not None:
        cards.append(("the full change", money(full.cost)))
    extra, charts = "", ""
    rows: list[list[Any]] = []
    if c is not None and p.first:  # nothing answered before: the new answers on their own
        cards.insert(0, ("first answers", f"{c.rows:,}"))
        rows = [[e.custom_id, "new", e.new, "", ""] for e in c.examples]
    elif c is not None:
        cards.insert(0, ("answers changed", f"{c.changed:,} of {c.rows:,}"))
        if c.kind is Kind.LABELS:
            charts = _bars("How answers moved (old → new)",
                           [(f"{o} → {nw}", float(k)) for o, nw, k in c.transitions])
        elif c.kind is Kind.JSON:
            charts = _bars("Rows changed, by field", [(f, float(k)) for f, k in c.fields])
        if c.kind is Kind.TEXT and c.examples:
            extra = "<h2>Word diff</h2>" + "".join(
                f"<p><b>{html.escape(e.custom_id)}</b></p><pre>{_diff_html(e.diff)}</pre>"
                for e in c.examples)
        rows = [[e.custom_id, "changed", e.new, "", e.old] for e in c.examples]
    return _page(f"batchrun preview: {p.manifest}",
                 f"spec {p.spec_hash[:12]} · {n(p.sampled, 'row')} "
                 + ("not answered yet, run under this spec" if p.first else
                    "answered before, run again under the new spec")
                 + "; their answers count when the change is applied",
                 _cards(cards), charts, extra, ["id", "status", "answer", "error", "old answer"],
                 rows)

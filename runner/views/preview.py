"""Edge: a preview in words — how answers moved, which fields changed, word diffs — as text for a
terminal and as markdown for a pull-request comment. No logic, no I/O."""

from __future__ import annotations

from collections.abc import Sequence

from runner.answers.compare import MAX_EXAMPLES, Comparison, Example, Kind, Preview, PreviewState
from runner.errors import n, usd_apart
from runner.estimate import Estimate
from runner.views.plan import money

CELL = 80  # characters of an answer shown in a table cell


def over_budget_text(p: Preview) -> str:
    over = p.over_budget
    assert over is not None
    cost, limit = usd_apart(over.cost, over.limit)
    cost = "an unknown amount (no price for a model)" if over.cost is None else cost
    if over.manifest is not None:
        return f"the preview of {over.manifest} would cost {cost}, over its max_cost {limit}"
    return f"the previews together would cost {cost}, over the project's max_cost {limit}"


def failed_text(p: Preview) -> str:
    return f"no sampled row was answered under the new spec ({p.error})"


def _cell(text: str, markdown: bool) -> str:
    text = " ".join(text.split())
    text = text if len(text) <= CELL else text[:CELL - 1] + "…"
    return text.replace("|", "\\|") if markdown else text


def _head(p: Preview, full: Estimate | None) -> list[str]:
    if p.state is PreviewState.OVER_BUDGET:
        cost = f"{n(p.sampled - p.reused, 'row')} to send, {money(p.estimate.cost)}"
    elif p.sent:
        cost = f"{n(p.sent, 'row')} sent now, {money(p.estimate.cost)}"
    else:
        cost = "nothing sent now, $0"
    if p.reused:
        cost += f"; {n(p.reused, 'row')} from an earlier preview of this spec, $0"
    lines = [f"preview of {p.manifest} (spec {p.spec_hash[:12]}): {n(p.sampled, 'row')} sampled of "
             f"{p.asked} asked; {cost}"]
    if full is not None:
        lines.append(f"the full change: {money(full.cost)} for the rows left; the preview's rows count "
                     "as done when it is applied")
    state = {
        PreviewState.NOTHING: "no row has an answer under another spec whose request changed, "
                              "and none waits for one: nothing to compare",
        PreviewState.OVER_BUDGET: f"nothing was sent: {over_budget_text(p)}"
        if p.over_budget else "",
        PreviewState.RUNNING: f"still running ({', '.join(p.jobs)}): run the preview again to "
                              "see it (nothing is sent twice)",
        PreviewState.FAILED: f"the preview got no answer: {failed_text(p)}",
    }.get(p.state)
    if state:
        lines.append(state)
    return lines


def _examples(examples: Sequence[Example], kind: Kind, markdown: bool) -> list[str]:
    lines: list[str] = []
    for e in examples:
        if kind is Kind.TEXT:
            if markdown:
                words = "".join(t if op == "=" else f"~~{t}~~" if op == "-" else f"**{t}**"
                                for op, t in e.diff if t.strip() or op == "=")
                lines.append(f"- `{e.custom_id}`: {' '.join(words.split())}")
            else:
                words = "".join(t if op == "=" else f"[-{t}-]" if op == "-" else f"{{+{t}+}}"
                                for op, t in e.diff)
                lines.append(f"  {e.custom_id}: {' '.join(words.split())}")
        elif markdown:
            lines.append(f"| `{e.custom_id}` | {_cell(e.old, True)} | {_cell(e.new, True)} |")
        else:
            lines.append(f"  {e.custom_id}: {_cell(e.old, False)}  →  {_cell(e.new, False)}")
    return lines


def _refusals(c: Comparison, markdown: bool) -> list[str]:
    if not c.refusals:
        return []
    shown = [f"- `{i}`: {_cell(e, True)}" if markdown else f"  {i}: {_cell(e, False)}"
             for i, e in c.refusals[:MAX_EXAMPLES]]
    more = len(c.refusals) - MAX_EXAMPLES
    return ["", "refused under the new spec:", *shown,
            *([f"... and {more} more"] if more > 0 else [])]


def _comparison(c: Comparison, markdown: bool) -> list[str]:
    lines = [f"{n(c.changed, 'answer')} of {c.rows} changed"
             + (f"; {n(c.refused, 'row')} got no answer under the new spec" if c.refused else "")]
    lines += _refusals(c, markdown)
    if c.kind is Kind.LABELS:
        lines.append("")
        if markdown:
            lines += ["| old | new | rows |", "|---|---|---:|"]
            lines += [f"| {_cell(o, True)} | {_cell(nw, True)} | {k} |"
                      for o, nw, k in c.transitions]
        else:
            width = max([len(o) for o, _, _ in c.transitions] + [3])
            lines += [f"  {o:<{width}} → {nw}: {k}" + ("" if o == nw else "  (moved)")
                      for o, nw, k in c.transitions]
        return lines
    if c.kind is Kind.JSON and c.fields:
        lines.append("")
        if markdown:
            lines += ["| field | rows changed |", "|---|---:|"]
            lines += [f"| `{f}` | {k} |" for f, k in c.fields]
        else:
            lines += [f"  {f}: {n(k, 'row')} changed" for f, k in c.fields]
    if c.examples:
        lines.append("")
        lines.append("rows that changed:" if c.kind is Kind.JSON else "word diff of a few rows:")
        if markdown and c.kind is Kind.JSON:
            lines += ["", "| id | old | new |", "|---|---|---|"]
        lines += _examples(c.examples[:MAX_EXAMPLES], c.kind, markdown)
        if len(c.examples) > MAX_EXAMPLES:
            lines += ["", f"... and {len(c.examples) - MAX_EXAMPLES} more (preview --format json "
                          "or --html)"]
    return lines


def _first_answers(c: Comparison, markdown: bool) -> list[str]:
    """A first look (no row answered before): the new answers on their own, every sampled row."""
    lines = ["no row had an answer yet: the first answers under this spec (they count as done "
             "when it is applied)"]
    if markdown:
        lines += ["", "| id | answer |", "|---|---|"]
        lines += [f"| `{e.custom_id}` | {_cell(e.new, True)} |" for e in c.examples]
    else:
        lines += [f"  {e.custom_id}: {_cell(e.new, False)}" for e in c.examples]
    return lines + _refusals(c, markdown)


def _body(p: Preview, markdown: bool) -> list[str]:
    if p.comparison is None:
        return []
    if p.first:
        return _first_answers(p.comparison, markdown)
    return _comparison(p.comparison, markdown)


def text(p: Preview, full: Estimate | None = None) -> str:
    return "\n".join([*_head(p, full), *_body(p, markdown=False)]) + "\n"


def markdown(p: Preview, full: Estimate | None = None) -> str:
    head = _head(p, full)
    lines = [f"#### Preview: `{p.manifest}`", "", *(f"{h}  " for h in head)]
    if p.comparison is not None:
        lines += ["", *_body(p, markdown=True)]
    return "\n".join(lines) + "\n"

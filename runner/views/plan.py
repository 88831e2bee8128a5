"""Edge: the plan in words — one view interface with a text, a markdown and a JSON view, all read
from the same Plan, and the words for its notes, headlines and budget. No logic, no I/O."""

from __future__ import annotations

from typing import Protocol

import orjson

from runner.errors import n, usd, usd_apart
from runner.estimate import Estimate
from runner.planning.plan import Action, Change, ManifestPlan, Note, NoteKind, Plan

_SYMBOL = {"create": "+", "replace": "~", "reshape": "~", "cancel": "-", "collect": "<", "wait": "…",
           "up-to-date": "=", "failed": "!", "running": "…", "blocked": "!"}


def _symbol(m: ManifestPlan) -> str:
    if m.state == "create" and m.spec_change is not None:  # answered before: an update, "~"
        return "~"
    return _SYMBOL.get(m.state, " ")


def _rerun_split(m: ManifestPlan, change: Change) -> tuple[int, int]:
    """Of the rows a create sends: re-runs (answered under an older spec), and new rows."""
    rerun = min(m.spec_change.rows, change.rows) if m.spec_change else 0
    return rerun, change.rows - rerun


def _action_words(m: ManifestPlan) -> list[str]:
    """The actions as a reader names them: a create of rows answered before is a re-run."""
    out = []
    for action in m.actions:
        creates = [c for c in m.changes if c.action is Action.CREATE]
        if action == "create" and creates and m.spec_change is not None:
            rerun, new = _rerun_split(m, creates[0])
            out += [*(["re-run"] if rerun else []), *(["create"] if new else [])]
        else:
            out.append(action)
    return out


def _create_text(m: ManifestPlan, change: Change) -> str:
    verb = "replace: " if "replace" in m.actions else ""
    rerun, new = _rerun_split(m, change)
    if not rerun or m.spec_change is None:
        return f"{verb or 'create: '}{n(change.rows, 'row')} in {n(change.shards, 'job')}"
    why = "spec changed" + (f": {', '.join(m.spec_change.changed)}"
                            if m.spec_change.changed else "")
    return (f"{verb}re-run {n(rerun, 'row')} ({why})"
            + (f" and create {n(new, 'new row')}" if new else "")
            + f", in {n(change.shards, 'job')}")


def headline(m: ManifestPlan) -> str:
    """The manifest's line in a plan: what apply will do, or where it stands."""
    parts = []
    for change in m.changes:
        if change.action is Action.CREATE:
            parts.append(_create_text(m, change))
        elif change.action is Action.COLLECT:
            parts.append(f"collect {n(len(change.jobs), 'finished job')}")
        elif change.action is Action.RESHAPE:
            parts.append(f"reshape {n(change.rows, 'row')} from their stored answers, $0")
        elif change.action is Action.REFRESH:
            parts.append(f"refresh the fingerprints of {n(change.rows, 'answer')}, $0")
        elif change.action is Action.CANCEL:
            parts.append(f"cancel {n(len(change.jobs), 'job')} ({change.reason})")
    if m.rows.waiting and m.hold_until:  # a back-off, not the quota: the note below says why
        parts.append(f"hold: {n(m.rows.waiting, 'row')} until {utc(m.hold_until)}, then sent "
                     "again")
    elif m.rows.waiting:
        parts.append(f"wait: {n(m.rows.waiting, 'row')} for a free job slot")
    if m.blocked is not None:
        parts.append(f"blocked: {n(m.rows.to_do, 'row')} to do wait for `batchrun retry "
                     f"{m.name}`")
    if not parts:
        if m.rows.in_flight:
            return f"running: {n(m.rows.in_flight, 'row')} in flight"
        if m.rows.failed:
            return f"failed: {n(m.rows.failed, 'row')} out of attempts"
        return "up-to-date"
    return "; ".join(parts)


def utc(stamp: str) -> str:
    """"2026-01-01T00:10:02Z" as a person reads it: "2026-01-01 00:10:02 UTC"."""
    return stamp.replace("T", " ").removesuffix("Z") + " UTC"


def blocked_text(m: ManifestPlan) -> str:
    b = m.blocked
    assert b is not None
    what = ("the endpoint refused the credentials" if b.credentials
            else "Vertex's batch importer refused the staged rows before any ran (nothing paid; "
                 "staged again they would be refused again)" if b.import_failure
            else f"{n(b.failures, 'job')} in a row ended at job level with no row answered")
    fix = ("fix the key (api_key_env) or the service account" if b.credentials
           else "change what the error names in the prompt, parameters or response schema (the "
                "importer takes no `$` keys, empty {}, nesting past 15, keys with spaces, a key "
                "typed differently between rows, or nulls; `batchrun validate` checks these)"
           if b.import_failure else "fix the cause")
    return (f"! blocked since {b.since}: {what}; last error: {b.error}. No row attempt was used. "
            f"What to do: {fix}, then run `batchrun retry {m.name}`.")


def _rows_text(m: ManifestPlan) -> str:
    r = m.rows
    parts = [n(r.total, "row"), f"{r.done:,} done" + (
        f" ({r.kept:,} kept from older specs)" if r.kept else "")]
    if r.in_flight:
        parts.append(f"{r.in_flight:,} in flight")
    parts.append(f"{r.to_do:,} to do")
    if r.failed:
        parts.append(f"{r.failed:,} failed")
    if r.reshape:
        parts.append(f"{r.reshape:,} to reshape")
    return ", ".join(parts)


def money(cost: float | None) -> str:
    if cost is None:
        return "unknown (no price for this model; add it under pricing: in batchrun.yaml)"
    return usd(cost)


_BASIS = {"history": "as in past answers", "max_tokens": "at most, by max_tokens",
          "embeddings": "embeddings", "unknown": "unknown"}


def _estimate_text(e: Estimate) -> str:
    return (f"~{e.input_tokens:,} input + {e.output_tokens:,} output tokens "
            f"({_BASIS[e.output_basis]}), {money(e.cost)}")


def note_text(note: Note) -> str:
    match note.kind:
        case NoteKind.INTERNAL_HOLD:
            return (f"Vertex failed the last job with INTERNAL (code 13), as it does for the first "
                    f"job in a region; resubmitting after {note.until} UTC "
                    "(quota.internal_retry_delay)")
        case NoteKind.FAILURE_HOLD:
            return (f"the last job ended {note.state} ({note.error}); no attempt of any row was "
                    f"used. Resubmitting after {note.until} UTC (failure {note.failures} of "
                    f"{note.max_failures} before the manifest is blocked; quota.failure_backoff)")
        case NoteKind.CANCEL_MAY_LOSE_OUTPUT:
            return ("warning: a cancelled partner-model job may leave no output; what it wrote is "
                    "collected, its other rows are sent again under the new spec")
        case NoteKind.PROTECTED:
            return "protected: apply refuses to cancel its jobs without --allow-cancel"
        case NoteKind.OTHER_ANSWERER:
            return (f"{n(note.rows, 'answer')} {'was' if note.rows == 1 else 'were'} made by "
                    f"{note.answered_by}: to do under {note.answerer} (an answer counts only for "
                    "who made it; the old one stays until the new one succeeds)")
        case NoteKind.PASSTHROUGH:
            return (f"{n(note.rows, 'stored row')} {'lacks' if note.rows == 1 else 'lack'} the "
                    "passthrough columns now asked for (or carry removed ones): filled from the "
                    "source, nothing sent")
        case NoteKind.FINGERPRINTS:
            why = ("they were stored with the fingerprints of JSONL rows' values (by an older "
                   "batchrun, or under on_change: forward), not of their lines" if note.legacy else
                   "they were stored under on_change: rerun, which knows a JSONL row by its line; "
                   "forward knows it by its values, so the file may be re-written with other "
                   "spacing or key order" if note.by_values else
                   "their source rows changed (a column added?) but their requests did not")
            return (f"{n(note.rows, 'answer')} {'stands' if note.rows == 1 else 'stand'} for "
                    f"{'its row' if note.rows == 1 else 'their rows'}, known by the request "
                    f"rather than the fingerprint: {why}; apply writes the fingerprints now, "
                    "nothing sent, and the next plan need not render these rows")


def over_budget_text(e: Estimate) -> str:
    """Why one manifest's estimate is refused."""
    if e.cost is None:
        return (f"over budget: no price is known for this model, so it cannot be checked against "
                f"max_cost {usd(e.max_cost)}")
    return "over budget: estimated {} is more than max_cost {}".format(*usd_apart(e.cost,
                                                                              e.max_cost))


def total_over_budget_text(plan: Plan) -> str:
    total = sum(m.estimate.cost or 0 for m in plan.manifests)
    return "over budget: this apply is estimated at {}, more than max_cost {}".format(
        *usd_apart(total, plan.max_cost))


def _manifest_notes(m: ManifestPlan) -> list[str]:
    return [*(note_text(note) for note in m.notes),
            *([over_budget_text(m.estimate)] if m.estimate.over_budget else [])]


def plan_text(plan: Plan) -> str:
    lines = []
    width = max((len(m.name) for m in plan.manifests), default=0)
    region: str | None = None
    # Grouped by region on a regional backend: jobs are created and listed per region.
    for m in sorted(plan.manifests, key=lambda m: m.region or ""):
        if m.region is not None and m.region != region:
            region = m.region
            lines.append(f"region {region}:")
        lines.append(f"{_symbol(m)} {m.name.ljust(width)}  {headline(m)}")
        lines.append(f"  {' ' * width}  {_rows_text(m)}")
        if m.rows.to_do:
            lines.append(f"  {' ' * width}  {_estimate_text(m.estimate)}")
        if m.blocked is not None:
            lines.append(f"  {' ' * width}  {blocked_text(m)}")
        lines.extend(f"  {' ' * width}  {note}" for note in _manifest_notes(m))
        for custom_id, err in m.failures:
            lines.append(f"  {' ' * width}  ! {custom_id}: {err}")
    for orphan in plan.orphans:
        verb = "cancel" if orphan.cancel else "running, not in any manifest (use --prune to cancel)"
        lines.append(f"- {orphan.manifest_name}  {verb}: {orphan.job}")
    if plan.total_over_budget:
        lines.append(total_over_budget_text(plan))
    s = plan.summary()
    lines.append("")
    held = s["rows_held"]
    lines.append(
        f"Plan: {n(s['rows_to_send'], 'row')} to send in {n(s['jobs_to_create'], 'job')}, "
        f"{s['jobs_to_collect']} to collect, {s['jobs_to_cancel']} to cancel, "
        f"{n(s['rows_waiting'] - held, 'row')} waiting for a job slot"
        + (f", {n(held, 'row')} held back after a job-level failure" if held else "") + ". "
        f"{n(s['up_to_date'], 'manifest')} up to date."
        + (f" {n(s['blocked'], 'manifest')} blocked." if s["blocked"] else "")
        + (f" {n(s['rows_failed'], 'row')} failed for good." if s["rows_failed"] else "")
        + (f" Estimated cost: {money(plan.cost)}." if s["rows_to_send"] or s["rows_waiting"] else "")
    )
    return "\n".join(lines) + "\n"


class PlanView(Protocol):
    """One way to show a plan; text, markdown and JSON all read the same Plan, so they cannot
    drift."""

    def render(self, plan: Plan) -> str: ...


class TextView:
    def render(self, plan: Plan) -> str:
        return plan_text(plan)


class MarkdownView:
    def render(self, plan: Plan) -> str:
        return plan_markdown(plan)


class JsonView:
    """The plan's data, with the words of its notes beside them (`notes`, `budget_notes`: the
    fields of format 1, kept: fields are only ever added)."""

    def render(self, plan: Plan) -> str:
        doc = plan.to_dict()
        doc["budget_notes"] = [total_over_budget_text(plan)] if plan.total_over_budget else []
        for m, out in zip(plan.manifests, doc["manifests"], strict=True):
            out["notes"] = _manifest_notes(m)
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n"


VIEWS: dict[str, PlanView] = {"text": TextView(), "markdown": MarkdownView(), "json": JsonView()}


def plan_markdown(plan: Plan) -> str:
    """A compact pull-request comment: one table row per manifest, details folded away."""
    s = plan.summary()
    changed = [m for m in plan.manifests if m.has_changes]
    head = (f"### batchrun plan: {n(len(changed), 'manifest')} to change, "
            f"{n(s['rows_to_send'], 'row')} to send")
    if s["rows_to_send"] or s["rows_waiting"]:
        head += f", estimated {money(plan.cost)}"
    lines = [head, ""]
    if plan.total_over_budget:
        lines.append(f"> **{total_over_budget_text(plan)}**")
    lines += ["| | manifest | action | to do | done | failed | jobs | tokens in / out | cost |",
              "|---|---|---|--:|--:|--:|--:|--:|--:|"]
    for m in plan.manifests:
        symbol = _symbol(m)
        jobs = sum(c.shards for c in m.changes)
        e = m.estimate
        cost = money(e.cost) if m.rows.to_do else "-"
        tokens = f"{e.input_tokens:,} / {e.output_tokens:,}" if m.rows.to_do else "-"
        action = ", ".join(_action_words(m)) or headline(m)
        lines.append(f"| `{symbol}` | {m.name} | {action} | {m.rows.to_do:,} | {m.rows.done:,} | "
                     f"{m.rows.failed:,} | {jobs} | {tokens} | {cost} |")
    details = []
    for m in plan.manifests:
        notes = [headline(m), *([blocked_text(m)] if m.blocked else []), *_manifest_notes(m),
                 *(f"failed `{i}`: {err}" for i, err in m.failures)]
        details.append(f"- **{m.name}** (`{m.file}`, spec `{m.spec_hash[:8]}`): "
                       + "; ".join(notes))
    for orphan in plan.orphans:
        details.append(f"- **{orphan.manifest_name}**: running job `{orphan.job}` has no manifest"
                       + (" and will be cancelled" if orphan.cancel else " (use --prune to cancel)"))
    lines += ["", "<details><summary>Details</summary>", "", *details, "", "</details>", ""]
    return "\n".join(lines)


def converged_text(plan: Plan) -> str:
    """The last line of apply --wait: what was answered, what failed for good, what is blocked."""
    done = sum(m.rows.done for m in plan.manifests)
    failed = sum(m.rows.failed for m in plan.manifests)
    blocked = [m.name for m in plan.manifests if m.blocked is not None]
    text = f"Done: {n(done, 'row')} answered"
    if failed:
        text += f", {n(failed, 'row')} failed after max_attempts (see `batchrun results NAME`)"
    if blocked:
        text += (f"; blocked: {', '.join(blocked)} (fix the cause, then `batchrun retry NAME`)")
    return text + "."

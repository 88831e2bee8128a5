"""What `batchrun report` shows, gathered: a manifest's destination rows with their prompts, the
totals, answers by label, tokens and cost by day. Reads only (the destination, the source to render
prompts); the HTML is reporthtml's."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from runner import estimate, identity
from runner.answers import collect, result
from runner.answers.compare import MAX_LABELS, is_label, text_of
from runner.answers.result import FIELDS, Status
from runner.backends.base import BackendReader
from runner.errors import BatchrunError
from runner.ledger.rowpass import rendered_rows
from runner.spec import Manifest, Settings

PROMPT_CHARS = 4000  # of a request kept for "show the prompt": enough to read, not to bloat


@dataclass
class ReportData:
    name: str
    model: str
    spec_hash: str
    columns: list[str]  # of each row below: id, status, answer, error, spec, passthrough...
    rows: list[list[Any]] = field(default_factory=list)
    totals: dict[str, Any] = field(default_factory=dict)
    labels: list[tuple[str, int]] | None = None  # answers by label, when answers are labels
    days: list[dict[str, Any]] = field(default_factory=list)  # tokens and cost by day


def _prompts(manifest: Manifest, reader: BackendReader, settings: Settings) -> dict[str, str]:
    """Each source row's request as it would be sent now; none when the source cannot be read
    (the report still shows the answers)."""
    try:
        return {r.custom_id: r.line[:PROMPT_CHARS].decode("utf-8", "replace")
                for r in rendered_rows(manifest, reader, settings)}
    except BatchrunError:
        return {}


def gather(manifest: Manifest, reader: BackendReader, settings: Settings) -> ReportData:
    extra = [c for c in manifest.passthrough if c not in FIELDS]
    own = ["id", "status", "answer", "error", "spec", "answered by", "finished", "prompt"]
    data = ReportData(manifest.name, manifest.model.short, manifest.spec_hash,
                      own + [f"{c} (column)" if c in own else c for c in extra])
    prompts = _prompts(manifest, reader, settings)
    price = estimate.price_for(manifest.model, settings.pricing)
    status: Counter[str] = Counter()
    answers: Counter[str] = Counter()
    label_like = True
    days: dict[str, dict[str, Any]] = {}
    tokens_in = tokens_out = 0
    answered_ids: set[str] = set()
    answerer = reader.answerer(manifest.model.resource)
    for stored in reader.read_destination(manifest.destination):
        custom_id = str(stored.get("custom_id"))
        state = result.state_of(stored, manifest.spec_hash, answerer, manifest.max_attempts).value
        # A row failed beside an older answer shows the error of its last attempt.
        row = result.shown(stored, result.State.FAILED) if state == "failed" else stored
        status[state] += 1
        output = row.get("output")
        if state in (Status.SUCCEEDED, "stale"):
            answered_ids.add(custom_id)
            if label_like and isinstance(output, str) and is_label(output):
                answers[output] += 1
            else:
                label_like = False
        day = str(row.get("finished_at") or "")[:10] or "unknown"
        paid = collect.paid(row)  # every attempt, retries included, as `batchrun status` counts
        u_in, u_out = paid["input_tokens"], paid["output_tokens"]
        tokens_in, tokens_out = tokens_in + u_in, tokens_out + u_out
        slot = days.setdefault(day, {"day": day, "rows": 0, "input_tokens": 0, "output_tokens": 0,
                                     "cost": 0.0 if price else None})
        slot["rows"] += 1
        slot["input_tokens"] += u_in
        slot["output_tokens"] += u_out
        if price is not None:  # each row in the band of its own prompt
            slot["cost"] += price.row_cost(u_in, u_out,
                                           int(paid.get("cache_read_input_tokens", 0)),
                                           int(paid.get("cache_creation_input_tokens", 0)))
        data.rows.append([custom_id, state, "" if output is None else text_of(output),
                          row.get("error") or "", str(row.get("spec_hash") or "")[:8],
                          identity.answerer_of(row),
                          str(row.get("finished_at") or ""), prompts.get(custom_id, ""),
                          *(text_of(row.get(c)) if row.get(c) is not None else "" for c in extra)])
    data.days = sorted(days.values(), key=lambda d: d["day"])
    data.totals = {
        "rows": sum(status.values()), "answered": status[Status.SUCCEEDED],
        "failed": status[Status.FAILED], "stale": status["stale"],
        "not_yet": sum(1 for i in prompts if i not in answered_ids) if prompts else None,
        "gone": sum(1 for i in answered_ids if i not in prompts) if prompts else None,
        "input_tokens": tokens_in, "output_tokens": tokens_out,
        "cost": sum(d["cost"] for d in days.values()) if price else None,
    }
    if label_like and answers and len(answers) <= MAX_LABELS:
        data.labels = sorted(answers.items(), key=lambda kv: (-kv[1], kv[0]))
    return data

"""Old answers beside new ones, as data: how short labels moved, which fields of JSON answers
changed, a word-level diff of long text. Pure: no I/O, no words for people (planview and the report
word it)."""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from runner.estimate import Estimate

LABEL_CHARS = 40  # an answer this short, on one line, reads as a label
MAX_LABELS = 30  # more distinct answers than this are not labels
MAX_EXAMPLES = 5  # changed rows a terminal or a PR comment shows (the HTML shows them all)


class Kind(StrEnum):
    LABELS = "labels"
    JSON = "json"
    TEXT = "text"


@dataclass(frozen=True, slots=True)
class Pair:
    """One sampled row: its answer under the old spec and under the new one (None: refused)."""

    custom_id: str
    old: Any
    new: Any
    new_error: str | None = None


@dataclass(frozen=True, slots=True)
class Example:
    custom_id: str
    old: str
    new: str
    diff: tuple[tuple[str, str], ...] = ()  # ("=" | "-" | "+", words), for long text


@dataclass(frozen=True, slots=True)
class Comparison:
    kind: Kind
    rows: int  # sampled rows with both answers
    changed: int
    refused: int = 0  # sampled rows the new spec got no answer for
    transitions: tuple[tuple[str, str, int], ...] = ()  # labels: old, new, rows (most first)
    fields: tuple[tuple[str, int], ...] = ()  # json: field, rows where it changed
    examples: tuple[Example, ...] = ()  # every changed row of the sample, by id
    refusals: tuple[tuple[str, str], ...] = ()  # sampled rows refused under the new spec: id, why

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "rows": self.rows, "changed": self.changed,
                "refused": self.refused,
                "transitions": [{"old": o, "new": n, "rows": c} for o, n, c in self.transitions],
                "fields": [{"field": f, "changed": c} for f, c in self.fields],
                "examples": [{"custom_id": e.custom_id, "old": e.old, "new": e.new,
                              "diff": [list(d) for d in e.diff]} for e in self.examples],
                "refusals": [{"custom_id": i, "error": e} for i, e in self.refusals]}


def text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def is_label(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= LABEL_CHARS and "\n" not in value


def kind_of(answers: Sequence[Any]) -> Kind:
    """How answers compare best: JSON objects field by field, short labels as a transition table,
    anything else as text."""
    present = [a for a in answers if a is not None]
    if present and all(isinstance(a, dict) for a in present):
        return Kind.JSON
    if present and all(is_label(a) for a in present) and len(set(present)) <= MAX_LABELS:
        return Kind.LABELS
    return Kind.TEXT


_WORDS = re.compile(r"\s+|[^\s]+")


def word_diff(old: str, new: str) -> tuple[tuple[str, str], ...]:
    """Runs of equal, removed and added words (whitespace kept), in order."""
    a, b = _WORDS.findall(old), _WORDS.findall(new)
    out: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(("=", "".join(a[i1:i2])))
            continue
        if i2 > i1:
            out.append(("-", "".join(a[i1:i2])))
        if j2 > j1:
            out.append(("+", "".join(b[j1:j2])))
    return tuple(out)


def compare(pairs: Sequence[Pair]) -> Comparison:
    answered = [p for p in pairs if p.new is not None]
    refused = len(pairs) - len(answered)
    refusals = tuple(sorted((p.custom_id, p.new_error or "no answer") for p in pairs
                            if p.new is None))
    kind = kind_of([p.old for p in answered] + [p.new for p in answered])
    changed = [p for p in answered if p.old != p.new]
    examples = tuple(
        Example(p.custom_id, text_of(p.old), text_of(p.new),
                word_diff(text_of(p.old), text_of(p.new)) if kind is Kind.TEXT else ())
        for p in sorted(changed, key=lambda p: p.custom_id))
    if kind is Kind.LABELS:
        moves = Counter((str(p.old), str(p.new)) for p in answered)
        transitions = tuple((o, n, c) for (o, n), c in sorted(
            moves.items(), key=lambda kv: (-kv[1], kv[0])))
        return Comparison(kind, len(answered), len(changed), refused, transitions=transitions,
                          examples=examples, refusals=refusals)
    if kind is Kind.JSON:
        fields: Counter[str] = Counter()
        for p in changed:
            old, new = p.old or {}, p.new or {}
            for key in sorted(set(old) | set(new)):
                if old.get(key) != new.get(key):
                    fields[key] += 1
        return Comparison(kind, len(answered), len(changed), refused,
                          fields=tuple(sorted(fields.items(), key=lambda kv: (-kv[1], kv[0]))),
                          examples=examples, refusals=refusals)
    return Comparison(kind, len(answered), len(changed), refused, examples=examples,
                      refusals=refusals)


class PreviewState(StrEnum):
    DONE = "done"  # every sampled row has its new answer (or refusal)
    RUNNING = "running"  # the preview's job had not finished when the wait ended
    OVER_BUDGET = "over_budget"  # nothing sent: the preview alone would pass max_cost
    NOTHING = "nothing"  # no row answered under another spec: nothing to compare
    FAILED = "failed"  # the preview's job ended without answers


@dataclass(frozen=True, slots=True)
class OverBudget:
    """Which budget stopped the previews: a manifest's max_cost (`manifest` names it) or the
    project's over all of them (`manifest` None); `cost` None when a model has no price."""

    manifest: str | None
    cost: float | None
    limit: float


@dataclass(frozen=True, slots=True)
class Preview:
    """What a preview did and found: the sample, what it cost, and the old answers beside the
    new. Its answers are the new spec's: once that spec is applied they count as done."""

    manifest: str
    spec_hash: str
    state: PreviewState
    asked: int  # rows asked for
    sampled: int = 0  # rows in the sample: answered under another spec and still in the source
    sent: int = 0  # rows sent now
    reused: int = 0  # rows an earlier preview of this spec already answered or is answering
    jobs: tuple[str, ...] = ()
    estimate: Estimate = field(default_factory=Estimate)  # of the rows sent now
    comparison: Comparison | None = None
    error: str | None = None  # why no sampled row was answered (a job's error, or a refusal)
    over_budget: OverBudget | None = None
    # No row was answered before: the sample is of rows not answered yet, its answers shown on
    # their own (the comparison's examples, with no old side).
    first: bool = False

    def to_json(self) -> dict[str, Any]:
        e = self.estimate
        return {"manifest": self.manifest, "spec_hash": self.spec_hash, "state": self.state.value,
                "asked": self.asked, "sampled": self.sampled, "sent": self.sent,
                "reused": self.reused, "jobs": list(self.jobs), "error": self.error,
                "first": self.first,
                "estimate": {"input_tokens": e.input_tokens, "output_tokens": e.output_tokens,
                             "cost_usd": e.cost, "max_cost": e.max_cost,
                             "over_budget": e.over_budget},
                "over_budget": None if self.over_budget is None else {
                    "manifest": self.over_budget.manifest, "cost_usd": self.over_budget.cost,
                    "max_cost": self.over_budget.limit},
                "comparison": self.comparison.to_json() if self.comparison else None}

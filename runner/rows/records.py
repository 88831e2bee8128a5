"""The records a source yields, as plain data every room may import: a row, or the reason a
line is not one. No logic, no I/O."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any


# Built millions of times: plain slotted dataclasses construct three times faster than frozen ones.
# Nothing mutates them after construction.
@dataclass(slots=True)
class SourceRow:
    number: int  # 1-based line (JSONL) or record (CSV) number, for error messages
    data: Mapping[str, Any]
    fp: str | None = None  # the fingerprint the source computed itself (BigQuery does), if any


@dataclass(frozen=True, slots=True)
class RowIssue:
    """A line a source could not turn into a row (non-UTF-8, bad JSON, bad CSV): yielded in its
    place, so every bad line of a file is reported in one run."""

    number: int
    message: str


@dataclass(frozen=True, slots=True)
class AnsweredIn:
    """Asks a source to leave out the rows a destination already answered: those whose fingerprint
    it holds as succeeded under `spec_hash`. A backend that can tell them itself (a BigQuery source
    into a BigQuery table) yields one Unchanged(count) in their place; others ignore it."""

    destination: str  # the destination's location, of kind `destination_kind`
    destination_kind: str
    spec_hash: str
    id_column: str
    answered_by: str = ""  # who answers now: another's answer is not done (identity.same_answerer)
    passthrough: tuple[str, ...] = ()  # a table lacking one of them has every row to reshape
    id_hash: bool = False  # the id rule, for a source that groups the ids sent in SQL
    max_id_chars: int = 64


@dataclass(frozen=True, slots=True)
class Unchanged:
    """How many source rows the source itself recognised as answered, and left out."""

    count: int


@dataclass(frozen=True, slots=True)
class LedgerRows:
    """A destination's ledger read where its source is (BigQuery): every row but those answered
    under the spec for a source row still unchanged (left there, as that row is), and the totals
    over every row the output-token estimate needs."""

    rows: Iterator[dict[str, Any]]
    answered: int  # succeeded rows with usage
    output_tokens: int

"""The result row, owned here: its fields in order, its statuses, which fields hold JSON, and how
each field is typed in a BigQuery table. Collect, checks and every destination writer use this;
adding a field is one edit here. Pure data, importable from any room."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any, Final

from runner.identity import same_answerer


class Status(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"


# After custom_id and the passthrough columns, in this order (a CSV destination's columns).
FIELDS: Final = ("status", "output", "error", "attempts", "usage", "model", "answered_by",
                 "spec_hash", "request_hash", "job", "finished_at", "retry", "source_fp", "raw")
ALL_FIELDS: Final = frozenset({"custom_id", *FIELDS})
# What a passthrough column may not be named: a result field, or `outcome`, which `results` adds.
RESERVED: Final = ALL_FIELDS | {"outcome"}
# The columns that make a destination batchrun's ledger: every writer writes them.
LEDGER_FIELDS: Final = ("custom_id", "status", "spec_hash", "request_hash")
# What the row pass reads of a destination (a table is queried for these alone).
LEDGER_READ: Final = ("custom_id", "status", "spec_hash", "request_hash", "attempts", "error",
                      "usage", "retry", "source_fp", "model", "answered_by", "job")
# Held as JSON text in a CSV cell.
JSON_FIELDS: Final = ("output", "usage", "retry")
# In a BigQuery destination. `output` is STRING: the text answer, or the JSON text of a parsed
# answer or an embedding (a JSON column would read a plain text answer differently in BigQuery and
# in its emulators); usage and retry are JSON.
BIGQUERY_TYPES: Final = {"custom_id": "STRING", "status": "STRING", "output": "STRING",
                         "error": "STRING", "attempts": "INT64", "usage": "JSON",
                         "model": "STRING", "answered_by": "STRING", "spec_hash": "STRING",
                         "request_hash": "STRING",
                         "job": "STRING", "finished_at": "STRING", "retry": "JSON",
                         "source_fp": "STRING", "raw": "STRING"}
BIGQUERY_JSON: Final = tuple(k for k, v in BIGQUERY_TYPES.items() if v == "JSON")
# An embeddings manifest's `output` in a table batchrun makes: ARRAY<FLOAT64> (type, mode), so SQL
# reads the vector as numbers. A table made before, with a STRING output, keeps its JSON text.
BIGQUERY_VECTOR: Final = ("FLOAT64", "REPEATED")


class State(StrEnum):
    """A stored row as people are told it (results, report, status): `stale` is only an answer of
    an older spec, or of another answerer; a row out of attempts under the current spec is
    `failed`, even beside an older answer kept for it."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STALE = "stale"


def state_of(row: Mapping[str, Any], spec_hash: str, answerer: str, max_attempts: int) -> State:
    if row.get("status") != Status.SUCCEEDED:
        return State.FAILED
    retry = row.get("retry")
    if isinstance(retry, Mapping) and retry.get("spec_hash") == spec_hash and int(
            retry.get("attempts") or 0) >= max_attempts:
        return State.FAILED
    if row.get("spec_hash") != spec_hash or not same_answerer(row.get("answered_by"),
                                                                row.get("job"), answerer):
        return State.STALE
    return State.SUCCEEDED


def shown(row: Mapping[str, Any], state: State) -> dict[str, Any]:
    """The row as `batchrun results` gives it: its `outcome` (a State) last (CSV readers keep
    their column positions; no passthrough column may have that name) and, for a row failed
    beside an older answer, the error of its last attempt."""
    out = dict(row)
    out["outcome"] = state.value
    retry = row.get("retry")
    if state is State.FAILED and not row.get("error") and isinstance(retry, Mapping):
        out["error"] = retry.get("error")
    return out


def missing_ledger_fields(columns: Iterable[str]) -> list[str]:
    """The ledger fields a destination's rows (or table) lack: batchrun wrote none of it if any."""
    have = set(columns)
    return [f for f in LEDGER_FIELDS if f not in have]


def make(*, custom_id: str, passthrough: Mapping[str, Any], ok: bool, output: Any,
         error: str | None, usage: Mapping[str, int] | None, model: str, spec_hash: str,
         request_hash: str, job: str, finished_at: str, source_fp: str = "",
         raw: str | None = None, answered_by: str = "") -> dict[str, Any]:
    """One result row, every field present, in order."""
    return {
        "custom_id": custom_id,
        **passthrough,
        "status": Status.SUCCEEDED.value if ok else Status.FAILED.value,
        "output": output if ok else None,
        "error": None if ok else error,
        "attempts": 1,
        "usage": dict(usage) if usage else None,
        "model": model,
        "answered_by": answered_by or None,  # who answered (identity.same_answerer)
        "spec_hash": spec_hash,
        "request_hash": request_hash,
        "job": job,
        "finished_at": finished_at,
        "retry": None,
        "source_fp": source_fp or None,
        "raw": raw,  # the answer's text as given, when response parsing changed it
    }

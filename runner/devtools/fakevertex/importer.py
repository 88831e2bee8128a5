"""The fake's model of Vertex's batch importer for Gemini input: it reads every row like a BigQuery
load with one schema for the whole file, and fails the whole job (code 3) on what the research
note's Datadog evidence shows it fails on (shared/reference/gemini-batch-protocol.md §2.4).
Written apart from batchrun's own guard (runner/rendering/importguard.py), so the tests can tell
when the guard misses one."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any, Final

MAX_LEVEL: Final = 15
_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,299}$")


class ImportFailure(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__("Please check 'Prepare input' section of the batch predictions "
                         f"documentation. {detail}")


def _kind(value: Any) -> str:
    return "array" if isinstance(value, list) else "record" if isinstance(value, dict) else "value"


def _walk(value: Any, path: str, level: int, kinds: dict[str, str]) -> str | None:
    """The first problem in `value` at `path` (a list's items at path + "[]": a repeated field's
    items are one field, as BigQuery folds them); `kinds` keeps each path's first kind."""
    kind = _kind(value)
    seen = kinds.setdefault(path, kind)
    field = path.replace("[]", "")
    if seen != kind and "array" in (seen, kind):
        return f"Repeated field must be imported as a JSON array. Field: {field}"
    if seen != kind and "record" in (seen, kind):
        return f"Field {field} is a record in one row and not in another"
    if isinstance(value, list):
        for item in value:
            if item is None:
                return f"Only optional fields can be set to NULL. Field: {field.rsplit('.', 1)[-1]}"
            found = _walk(item, path + "[]", level, kinds)
            if found:
                return found
        return None
    if not isinstance(value, dict):
        return None
    if not value:
        return f"Cannot store struct '{field}' with no fields"
    if level + 1 > MAX_LEVEL:
        return (f"Schema nested too deeply, at least {level + 1} compared to the maximum allowed "
                f"level of {MAX_LEVEL}")
    for key, item in value.items():
        if not _NAME.match(str(key)):
            return (f'Invalid field name "{key}". Fields must contain only letters, numbers, and '
                    "underscores, start with a letter or underscore, and be at most 300 "
                    "characters long.")
        found = _walk(item, f"{path}.{key}" if path else str(key), level + 1, kinds)
        if found:
            return found
    return None


def problem(rows: Iterable[dict[str, Any]]) -> str | None:
    """The first reason the importer refuses these input rows, or None."""
    kinds: dict[str, str] = {}
    for row in rows:
        found = _walk(row, "", 0, kinds)
        if found:
            return found
    return None


def as_loaded(value: str) -> Any:
    """`value` as a loader that guesses types reads it: digits as a number, true/false as a bool."""
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    try:
        number = float(value)
    except ValueError:
        return value
    if value.lstrip("+-").isdigit():
        return int(value)
    return number if math.isfinite(number) and not value.isalpha() else value

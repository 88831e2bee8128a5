"""What a JSON or BigQuery loader may turn a custom_id into, so an answer whose id came back coerced
("000123" as 123, "true" as true, "2026-01-01" as a timestamp) can be matched to the staged row it
can only be. Pure: no I/O.

Vertex's importer guesses JSON types (a Gemini batch note saw "000000" come back as 0; inferred for
the other families): an id is sent as it is, and matched back here, so no id changes and no stored
answer is paid for again.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Final

_NUMBER: Final = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
# A date, maybe as a timestamp at midnight UTC: ids hold no ":", so no other time is sent as is.
_DATE: Final = re.compile(r"(\d{4}-\d{2}-\d{2})(?:[T ]00:00(?::00(?:\.0*)?)?(?:Z|[+-]00:?00| UTC)?)?")
_MAYBE: Final = frozenset("0123456789+-.tTfF")  # a cheap first look: most ids are none of these


def loader_key(text: str) -> tuple[str, object] | None:
    """The value a loader would read `text` as, when it would read it as other than a string: ids
    with one key are the same to a loader. None for an id no loader coerces."""
    if not text or text[0] not in _MAYBE:
        return None
    lowered = text.lower()
    if lowered in ("true", "false"):
        return ("bool", lowered == "true")
    match = _DATE.fullmatch(text)
    if match is not None:
        try:
            return ("date", date.fromisoformat(match[1]))
        except ValueError:
            return None
    if _NUMBER.fullmatch(text):
        try:
            return ("number", Decimal(text))
        except InvalidOperation:
            return None
    return None


class CoercedIds:
    """Matches a returned id that names no staged row to the one staged id of the same loader key.
    Built once, at the first miss, from every staged id not yet answered; an id two staged rows
    share (or one already answered) matches nothing: a wrong match would store one row's answer
    under another's id."""

    def __init__(self, unanswered: list[str], answered_keys: set[tuple[str, object]]) -> None:
        self.by_key: dict[tuple[str, object], list[str]] = {}
        for custom_id in unanswered:
            key = loader_key(custom_id)
            if key is not None:
                self.by_key.setdefault(key, []).append(custom_id)
        self.answered_keys = answered_keys

    def match(self, returned: str) -> str | None:
        key = loader_key(returned)
        if key is None or key in self.answered_keys:
            return None
        candidates = self.by_key.get(key, [])
        if len(candidates) != 1:
            return None
        self.answered_keys.add(key)
        return candidates[0]

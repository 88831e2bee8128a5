"""A row's id as a Gemini request line carries it and back: a prefix no importer retypes. Pure.

Gemini batch has no custom_id: an extra top-level key of the input line comes back on its output
row, but the importer reads the file like a BigQuery load and may retype a value ("000000" came
back as 0; shared/reference/gemini-batch-protocol.md §2.3). An id that starts with letters stays
text, so batchrun sends "br-000123" and reads the prefix off.
"""

from __future__ import annotations

from typing import Any, Final

KEY: Final = "custom_id"
PREFIX: Final = "br-"


def sent(custom_id: str) -> str:
    return PREFIX + custom_id


def tracked(value: Any) -> str | None:
    """The id batchrun tracks from the one an output row carries (one retyped, as text)."""
    if value is None:
        return None
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return text.removeprefix(PREFIX)

"""The custom_id rule, in one place for rendering/row.py (which applies it in Python) and a BigQuery source
(which applies it in SQL): which ids are sent as they are, which as a hash. Pure: no I/O."""

from __future__ import annotations

import hashlib
import re
from typing import Final

# The strictest documented custom_id rule (Anthropic's batch API: ^[a-zA-Z0-9_-]{1,64}$); the
# length is quota.max_id_chars'.
ID_CHARS: Final = "[A-Za-z0-9_-]+"
HASH_HEX: Final = 40  # hex digits of sha256 kept: 160 bits
# What `hash: true` sends: with it, a raw id of this shape is hashed too, so a sent id of this
# shape is always a hash and no raw id can take another row's hashed id.
HASHED_SHAPE: Final = f"h[0-9a-f]{{{HASH_HEX}}}"

id_ok = re.compile(ID_CHARS).fullmatch
hashed_shape = re.compile(HASHED_SHAPE).fullmatch


def hashed_id(text: str) -> str:
    return "h" + hashlib.sha256(text.encode()).hexdigest()[:HASH_HEX]


def sent_as_is(text: str, max_chars: int, id_hash: bool) -> bool:
    """Whether the id `text` is sent as it is: it fits the rule (and, under `hash: true`, does not
    look like a hash). Valid ids stay as they are when hash: true is added later, which would
    otherwise re-key, and so pay again for, every answered row."""
    return (0 < len(text) <= max_chars and id_ok(text) is not None
            and not (id_hash and hashed_shape(text) is not None))

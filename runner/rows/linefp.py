"""The fingerprint of a JSONL row: its line's bytes, without the line end, hashed (xxh3-128) and
tagged `x`. Type-exact as text is (1, 1.0, "1" and null differ; NaN, nested values too) and cheap
enough that an unchanged row is told without parsing it. Pure."""

from __future__ import annotations

from typing import Final

import xxhash

TAG: Final = "x"  # no hex digit: told apart from the fingerprints of an older batchrun
hexdigest = xxhash.xxh3_128_hexdigest


def line_fp(line: bytes) -> str:
    """Of a line as read (its line end, if any, left off here)."""
    return TAG + hexdigest(line.rstrip(b"\r\n"))[:23]


def is_line_fp(fp: object) -> bool:
    return isinstance(fp, str) and fp[:1] == TAG

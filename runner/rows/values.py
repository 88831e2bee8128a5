"""Typed values of columnar sources (Parquet files, BigQuery tables) as the JSON-friendly values a
JSONL row holds, so templates, passthrough columns and fingerprints treat every source alike.
Converts only; reads nothing."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import uuid
from typing import Any


def plain(value: Any, *, exact: bool = False) -> Any:
    """Times as ISO text (those with a zone, in UTC), decimals as floats (with `exact`, as their
    digits: a DECIMAL(38, 2) does not fit a float, and an edit past its 16th digit must still be
    seen), bytes as base64, UUIDs as text; lists and structs (maps) converted through; everything
    else (str, int, float with NaN, bool, None) as it is."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        # An instant, told in UTC: a machine in another zone must not see (and send) a new row.
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.time) and value.utcoffset() is not None:
        moment = dt.datetime.combine(dt.date(2000, 1, 1), value)
        return moment.astimezone(dt.UTC).timetz().isoformat()
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value) if exact else float(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return [plain(v, exact=exact) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v, exact=exact) for k, v in value.items()}
    return value

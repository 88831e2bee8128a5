"""Typed values of columnar sources (Parquet files, BigQuery tables) as the JSON-friendly values a
JSONL row holds, so templates, passthrough columns and fingerprints treat every source alike.
Converts only; reads nothing."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import uuid
from typing import Any


def plain(value: Any) -> Any:
    """Times as ISO text, decimals as floats, bytes as base64, UUIDs as text; lists and structs
    (maps) converted through; everything else (str, int, float with NaN, bool, None) as it is."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value

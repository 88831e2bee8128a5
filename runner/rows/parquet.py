"""Rows out of a local Parquet file, a batch at a time, through DuckDB (loaded only when a Parquet
source is read): typed values made JSON-friendly (rows.values), a row over the size limit refused
by its number, an unreadable file one clear error. File reads only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from runner.errors import BatchrunError, error
from runner.rows.records import RowIssue, SourceRow
from runner.rows.values import plain

BATCH = 2048  # rows fetched at a time: memory stays flat however long the file


def _open(path: Path) -> Any:
    import duckdb

    con = duckdb.connect(config={"threads": 2})
    try:
        return con.execute("SELECT * FROM read_parquet(?)", [str(path)])
    except duckdb.Error as exc:
        con.close()
        raise BatchrunError([error(f"cannot read {path} as Parquet: {str(exc).splitlines()[0]}",
                                   hint="check the file is Parquet, or set spec.source.format")]
                            ) from None


def read_parquet(path: Path, limit: int | None = None) -> Iterator[SourceRow | RowIssue]:
    """Each record as a row, numbered from 1; one of more than `limit` bytes (as JSON) is a
    RowIssue naming it."""
    result = _open(path)
    try:
        columns = [d[0] for d in result.description]
        number = 0
        while batch := result.fetchmany(BATCH):
            for values in batch:
                number += 1
                data = {c: plain(v) for c, v in zip(columns, values, strict=True)}
                if limit is not None:
                    size = len(orjson.dumps(data, default=str))
                    if size > limit:
                        yield RowIssue(number, f"is {size:,} bytes as JSON, over the limit of "
                                               f"{limit:,} for one request")
                        continue
                yield SourceRow(number, data)
    finally:
        result.close()


"""Rows out of a local Parquet file, a batch at a time, through DuckDB (loaded only when a Parquet
source is read): typed values made JSON-friendly (rows.values, decimals exact, times with a zone
in UTC whatever the machine's zone), a row over the size limit refused by its number, an unreadable
file one clear error however far into it the damage is. File reads only."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from runner.errors import BatchrunError, error
from runner.rows.records import RowIssue, SourceRow
from runner.rows.values import plain

BATCH = 2048  # rows fetched at a time: memory stays flat however long the file


def _unreadable(path: Path, exc: Exception) -> BatchrunError:
    return BatchrunError([error(f"cannot read {path} as Parquet: {str(exc).splitlines()[0]}",
                                hint="check the file is Parquet (and whole), or set "
                                     "spec.source.format")])


def _batches(path: Path) -> Iterator[tuple[list[str], list[tuple[Any, ...]]]]:
    """The file's column names and its rows, BATCH at a time."""
    import duckdb

    with tempfile.TemporaryDirectory(prefix="batchrun-parquet-") as tmp:
        # DuckDB reads a name with [ ] ? * as a pattern: a link of a plain name reads this file.
        link = Path(tmp) / "source.parquet"
        link.symlink_to(path.resolve())
        con = duckdb.connect(config={"threads": 2})
        try:
            result = con.execute("SELECT * FROM read_parquet(?)", [str(link)])
            columns = [d[0] for d in result.description]
            while batch := result.fetchmany(BATCH):
                yield columns, batch
        except duckdb.Error as exc:
            raise _unreadable(path, exc) from None
        finally:
            con.close()


def read_parquet(path: Path, limit: int | None = None) -> Iterator[SourceRow | RowIssue]:
    """Each record as a row, numbered from 1; one of more than `limit` bytes (as JSON) is a
    RowIssue naming it."""
    number = 0
    for columns, batch in _batches(path):
        for values in batch:
            number += 1
            data = {c: plain(v, exact=True) for c, v in zip(columns, values, strict=True)}
            if limit is not None:
                size = len(orjson.dumps(data, default=str))
                if size > limit:
                    yield RowIssue(number, f"is {size:,} bytes as JSON, over the limit of "
                                           f"{limit:,} for one request")
                    continue
            yield SourceRow(number, data)

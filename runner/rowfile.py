"""Streams rows out of local JSONL and CSV files, line by line; file reads only, never holds the file.

Non-UTF-8 bytes, bad JSON and non-object lines become RowIssue items naming the line, not exceptions,
so every bad line of a file is reported in one run.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from runner.rows import RowIssue, SourceRow

_BOM = b"\xef\xbb\xbf"
COLUMN_SAMPLE = 1000  # JSONL rows read to discover columns
# Python's csv refuses fields over 128 KiB; a row's text may be as long as a request may be (and an
# answer longer). Over this, a field is an error naming its line, not a crash.
CSV_FIELD_LIMIT = 64 * 1024 * 1024
csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))


def _decoded_lines(path: Path) -> Iterator[tuple[int, str | RowIssue]]:
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            raw = line[len(_BOM):] if number == 1 and line.startswith(_BOM) else line
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield number, RowIssue(
                    number, f"is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column "
                            f"{exc.start + 1}); re-encode the file as UTF-8")


def parse_jsonl_line(number: int, text: str | bytes, where: str = "") -> SourceRow | RowIssue:
    """One JSONL line -> a row, or the reason it is not one (`where` names the object, if any)."""
    try:
        data: Any = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return RowIssue(number, f"{where}is not valid JSON ({exc.msg})")
    if not isinstance(data, dict):
        return RowIssue(number, f"{where}must be a JSON object, not {type(data).__name__}")
    return SourceRow(number, data)


def read_jsonl(path: Path) -> Iterator[SourceRow | RowIssue]:
    # orjson reads the bytes and checks UTF-8 itself; decoding first only to name a bad byte.
    loads, decode_error = orjson.loads, orjson.JSONDecodeError
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if number == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM):]  # noqa: PLW2901
            try:
                data = loads(raw)
            except decode_error:
                if not raw.strip():
                    continue
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    yield RowIssue(number, f"is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at "
                                           f"column {exc.start + 1}); re-encode the file as UTF-8")
                    continue
                yield parse_jsonl_line(number, text)
                continue
            if type(data) is dict:
                yield SourceRow(number, data)
            else:
                yield RowIssue(number, f"must be a JSON object, not {type(data).__name__}")


def read_csv(path: Path) -> Iterator[SourceRow | RowIssue]:
    issues: list[RowIssue] = []
    line_numbers: list[int] = []

    def text_lines() -> Iterator[str]:
        for number, text in _decoded_lines(path):
            if isinstance(text, RowIssue):
                issues.append(text)
                continue
            line_numbers.append(number)
            yield text

    reader = csv.reader(text_lines())
    header: list[str] | None = None
    ended = 0  # the last line of the record before: a record may span lines (quoted newlines)
    while True:
        try:
            record = next(reader, None)
        except csv.Error as exc:  # the reader cannot go on past a broken record
            yield from issues
            yield RowIssue(ended + 1, f"is not valid CSV ({exc}); nothing after it was read")
            return
        if record is None:
            break
        yield from issues
        issues.clear()
        start, ended = ended + 1, (line_numbers[-1] if line_numbers else 0)
        if header is None:
            header = [h.strip() for h in record]
            repeated = sorted({h for h in header if header.count(h) > 1})
            if repeated:
                yield RowIssue(start, "the header repeats the column "
                                      + ", ".join(f'"{h}"' for h in repeated)
                                      + "; each column needs its own name")
                return
            continue
        if not record or all(not field for field in record):
            continue
        if len(record) != len(header):
            yield RowIssue(start, f"has {len(record)} fields but the header has {len(header)}")
            continue
        yield SourceRow(start, dict(zip(header, record, strict=True)))
    yield from issues


def read_rows(path: Path, fmt: str) -> Iterator[SourceRow | RowIssue]:
    """Rows of a local source file; `fmt` is "jsonl", "csv" or "requests" (JSONL of request rows)."""
    return read_csv(path) if fmt == "csv" else read_jsonl(path)


def discover_columns(path: Path, fmt: str) -> list[str] | None:
    """The columns a file offers (CSV header, or keys of the first JSONL rows); None if unreadable."""
    try:
        if fmt == "csv":
            with path.open(encoding="utf-8-sig", newline="") as fh:
                header = [h.strip() for h in next(csv.reader(fh), [])]
            return header or None
        seen: dict[str, None] = {}
        for i, item in enumerate(read_jsonl(path)):
            if i >= COLUMN_SAMPLE:
                break
            if isinstance(item, SourceRow):
                seen.update(dict.fromkeys(item.data))
        return list(seen) or None  # an empty file offers no columns to check against
    except (OSError, UnicodeDecodeError):
        return None

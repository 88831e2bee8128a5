"""Streams rows out of local JSONL and CSV files, line by line; file reads only, never holds the file.

Non-UTF-8 bytes, bad JSON and non-object lines become RowIssue items naming the line, not exceptions,
so every bad line of a file is reported in one run.
"""

from __future__ import annotations

import csv
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

import orjson

from runner.rows import linefp
from runner.rows.linefp import line_fp
from runner.rows.records import RowIssue, SourceRow

_BOM = b"\xef\xbb\xbf"
COLUMN_SAMPLE = 1000  # JSONL rows read to discover columns
# Python's csv refuses fields over 128 KiB; a row's text may be as long as a request may be (and an
# answer longer). Over this, a field is an error naming its line, not a crash.
CSV_FIELD_LIMIT = 64 * 1024 * 1024
csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))


_DRAIN = 1 << 16  # bytes read at a time while skipping the rest of an oversize line (small:
# under the allocator's mmap threshold, each chunk reuses the last one's memory)


@dataclass(frozen=True, slots=True)
class _Long:
    """A line over the limit, skipped unread: its length and whether it leaves a quote open."""

    size: int
    odd_quotes: bool


def _lines(fh: BinaryIO, limit: int | None) -> Iterator[tuple[int, bytes | _Long]]:
    """Each physical line with its number; one over `limit` bytes (its newline not counted) as a
    _Long instead, read a chunk at a time and dropped once past the limit: never held whole."""
    if limit is None:
        yield from enumerate(fh, start=1)
        return
    readline, number = fh.readline, 0
    while chunk := readline(_DRAIN):
        number += 1
        pieces, size, end = [chunk], len(chunk), chunk[-2:]  # end: the line's last two bytes
        while not chunk.endswith(b"\n") and size <= limit + 2 and (chunk := readline(_DRAIN)):
            pieces.append(chunk)
            size += len(chunk)
            end = (end + chunk)[-2:]
        quotes = sum(p.count(b'"') for p in pieces)
        if chunk and not chunk.endswith(b"\n"):  # past the limit, mid-line: read on, keep nothing
            pieces.clear()
            while chunk := readline(_DRAIN):
                size += len(chunk)
                quotes += chunk.count(b'"')
                end = (end + chunk)[-2:]
                if chunk.endswith(b"\n"):
                    break
        size -= len(end) - _size(end)  # a \r\n may straddle two reads
        if size > limit:
            yield number, _Long(size, quotes % 2 == 1)
        else:
            yield number, pieces[0] if len(pieces) == 1 else b"".join(pieces)


def _too_long(long: _Long, limit: int | None) -> str:
    return (f"is {long.size:,} bytes long, more than a request may be ({limit:,}, "
            "quota.max_request_bytes); skipped without reading it")


def _decoded_lines(path: Path, limit: int | None
                   ) -> Iterator[tuple[int, str | RowIssue | _Long, int]]:
    """(number, text or what is wrong with the line, its size in bytes)."""
    with path.open("rb") as fh:
        for number, line in _lines(fh, limit):
            if type(line) is _Long:
                yield number, line, line.size
                continue
            assert isinstance(line, bytes)
            raw = line[len(_BOM):] if number == 1 and line.startswith(_BOM) else line
            try:
                yield number, raw.decode("utf-8"), len(raw)
            except UnicodeDecodeError as exc:
                yield number, _bad_utf8(number, raw, exc), len(raw)


def parse_jsonl_line(number: int, text: str | bytes, where: str = "") -> SourceRow | RowIssue:
    """One JSONL line -> a row, or the reason it is not one (`where` names the object, if any)."""
    try:
        data: Any = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return RowIssue(number, f"{where}is not valid JSON ({exc.msg})")
    if not isinstance(data, dict):
        return RowIssue(number, f"{where}must be a JSON object, not {type(data).__name__}")
    return SourceRow(number, data, line_fp(text if isinstance(text, bytes) else text.encode()))


def stamp(path: Path) -> list[int] | None:
    """A file's version, told without reading it: its size and modification time (None: gone)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _size(line: bytes) -> int:
    """A line's length as the limit counts it: its line end not counted."""
    return len(line) - (2 if line.endswith(b"\r\n") else 1 if line.endswith(b"\n") else 0)


def hash_lines(fh: BinaryIO, limit: int | None, out: IO[bytes]
               ) -> tuple[array[int], list[RowIssue]]:
    """Write the fingerprint of each line of a JSONL file to `out`, one per line, without parsing
    it (runner/rows/linefp.py: the same fingerprint read_jsonl gives its row); a blank line, or one
    over `limit` bytes (never held whole), as an empty line. Returns each line's byte offset and
    the RowIssues of the long ones. The hot loop of a big plan: lean."""
    readline, tag, hexdigest = fh.readline, linefp.TAG, linefp.hexdigest
    cap = -1 if limit is None else limit + 3  # a line within the limit, and its \r\n, fits
    over = (1 << 62) if limit is None else limit  # a line longer, its newline not counted: long
    offsets: array[int] = array("Q")
    issues: list[RowIssue] = []
    batch: list[str] = []
    mark, add, write = offsets.append, batch.append, out.write
    offset = 0
    while raw := readline(cap):
        mark(offset)
        offset += len(raw)
        if len(raw) == cap and raw[-1:] != b"\n":  # over the limit: read on, keep nothing
            size, tail = len(raw), raw[-1:]
            while chunk := readline(_DRAIN):
                size += len(chunk)
                if chunk[-1:] == b"\n":  # its \r may have ended the chunk before
                    size -= len(end := tail + chunk[-2:]) - _size(end)
                    break
                tail = chunk[-1:]
            offset = fh.tell()
            issues.append(RowIssue(len(offsets), _too_long(_Long(size, False), limit)))
            add("")
        elif len(raw) > over and _size(raw) > over:  # within the cap, over the limit
            issues.append(RowIssue(len(offsets), _too_long(_Long(_size(raw), False), limit)))
            add("")
        else:
            if offset == len(raw) and raw.startswith(_BOM):
                raw = raw[len(_BOM):]
            add("" if not raw or raw.isspace() else tag + hexdigest(raw.rstrip(b"\r\n"))[:23])
        if len(batch) == 65536:
            write(("\n".join(batch) + "\n").encode())
            batch.clear()
    if batch:
        write(("\n".join(batch) + "\n").encode())
    return offsets, issues


def row_at(fh: BinaryIO, number: int, offset: int) -> SourceRow | RowIssue:
    """The row of the line at `offset` (line `number`, not blank: hash_lines gave it a
    fingerprint), as read_jsonl reads it."""
    fh.seek(offset)
    raw = fh.readline()
    if number == 1 and raw.startswith(_BOM):
        raw = raw[len(_BOM):]
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        refused = _refused(number, raw)
        assert refused is not None
        return refused
    return SourceRow(number, data, line_fp(raw)) if type(data) is dict else _not_object(
        number, data)


def _refused(number: int, raw: bytes) -> SourceRow | RowIssue | None:
    """A line orjson refused, read again to say why: None if blank, the bad byte named, or the
    JSON error (and a row, should a decoded line parse after all)."""
    if not raw.strip():
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _bad_utf8(number, raw, exc)
    return parse_jsonl_line(number, text)


def _bad_utf8(number: int, raw: bytes, exc: UnicodeDecodeError) -> RowIssue:
    return RowIssue(number, f"is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column "
                            f"{exc.start + 1}); re-encode the file as UTF-8")


def _not_object(number: int, data: Any) -> RowIssue:
    return RowIssue(number, f"must be a JSON object, not {type(data).__name__}")


def read_jsonl(path: Path, limit: int | None = None) -> Iterator[SourceRow | RowIssue]:
    """The rows of a JSONL file; a line over `limit` bytes is a RowIssue, never read whole."""
    # orjson reads the bytes and checks UTF-8 itself; decoding first only to name a bad byte.
    loads, decode_error, fp = orjson.loads, orjson.JSONDecodeError, line_fp
    with path.open("rb") as fh:
        for number, raw in _lines(fh, limit):
            if type(raw) is _Long:
                yield RowIssue(number, _too_long(raw, limit))
                continue
            assert isinstance(raw, bytes)
            if number == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM):]  # noqa: PLW2901
            try:
                data = loads(raw)
            except decode_error:
                if (refused := _refused(number, raw)) is not None:
                    yield refused
                continue
            yield SourceRow(number, data, fp(raw)) if type(data) is dict else _not_object(
                number, data)


class _CsvLines:
    """The lines of a CSV file for csv.reader, bounded: a record may span lines, and one of more
    than `limit` bytes stops the reading at its first line (`cut`), as does a long header. Lines
    read but not given to the reader (non-UTF-8, long but closing its quotes) wait in `issues`."""

    def __init__(self, path: Path, limit: int | None) -> None:
        self.path, self.limit = path, limit
        self.issues: list[RowIssue] = []
        self.given: list[int] = []  # the lines given to the reader since its last record
        self.size = 0  # their bytes
        self.records = 0
        self.cut = 0

    def __iter__(self) -> Iterator[str]:
        for number, text, size in _decoded_lines(self.path, self.limit):
            if isinstance(text, RowIssue):
                self.issues.append(text)
                continue
            if isinstance(text, _Long):
                if self.given or text.odd_quotes or not self.records:  # no clean place to go on
                    self.cut = self.given[0] if self.given else number
                    return
                self.issues.append(RowIssue(number, _too_long(text, self.limit)))
                continue
            self.size += size
            if self.limit is not None and self.size > self.limit:
                self.cut = self.given[0] if self.given else number
                return
            self.given.append(number)
            yield text

    def record_read(self) -> tuple[int, int]:
        """The first and last line of the record the reader made, and on to the next."""
        lines = (self.given[0], self.given[-1]) if self.given else (0, 0)
        self.given, self.size = [], 0
        self.records += 1
        return lines

    def cut_issues(self) -> Iterator[RowIssue]:
        yield from self.issues
        yield RowIssue(self.cut, f"is a CSV record of more than {self.limit or 0:,} bytes, more "
                                 "than a request may be (quota.max_request_bytes); nothing after "
                                 "it was read")


def read_csv(path: Path, limit: int | None = None) -> Iterator[SourceRow | RowIssue]:
    """The rows of a CSV file; a record over `limit` bytes is a RowIssue, never read whole. A long
    line that closes its quotes is skipped and reading goes on; one that leaves a quoted field
    open (its record goes on below) ends the reading there, said as such."""
    lines = _CsvLines(path, limit)
    issues = lines.issues
    reader = csv.reader(lines)
    header: list[str] | None = None
    ended = 0  # the last line of the record before
    while True:
        try:
            row = next(reader, None)
        except csv.Error as exc:  # the reader cannot go on past a broken record
            if lines.cut:
                yield from lines.cut_issues()
                return
            yield from issues
            yield RowIssue(lines.given[0] if lines.given else ended + 1,
                           f"is not valid CSV ({exc}); nothing after it was read")
            return
        if lines.cut:  # what the reader made of the lines before the cut is no record
            yield from lines.cut_issues()
            return
        if row is None:
            break
        start, ended = lines.record_read()
        yield from issues
        issues.clear()
        if header is None:
            header = [h.strip() for h in row]
            repeated = sorted({h for h in header if header.count(h) > 1})
            if repeated:
                yield RowIssue(start, "the header repeats the column "
                                      + ", ".join(f'"{h}"' for h in repeated)
                                      + "; each column needs its own name")
                return
            continue
        if not row or all(not field for field in row):
            continue
        if len(row) != len(header):
            yield RowIssue(start, f"has {len(row)} fields but the header has {len(header)}")
            continue
        yield SourceRow(start, dict(zip(header, row, strict=True)))
    yield from issues


def read_rows(path: Path, fmt: str, limit: int | None = None) -> Iterator[SourceRow | RowIssue]:
    """Rows of a local source file; `fmt` is "jsonl", "csv", "parquet" or "requests" (JSONL of
    request rows). With `limit`, a row of more bytes is refused as it is read (a RowIssue naming
    its line)."""
    if fmt == "parquet":
        from runner.rows import parquet

        return parquet.read_parquet(path, limit)
    return read_csv(path, limit) if fmt == "csv" else read_jsonl(path, limit)


def discover_columns(path: Path, fmt: str, limit: int | None = None) -> list[str] | None:
    """The columns a file offers (CSV header, or keys of the first JSONL rows); None if unreadable.
    Rows over `limit` bytes are passed over unread, as read_rows does."""
    try:
        if fmt == "parquet":
            # Its schema is DuckDB's to read, and validate loads no engine: the template's
            # variables are checked when the rows are rendered.
            return None
        if fmt == "csv":
            lines = _CsvLines(path, limit)
            header = [h.strip() for h in next(csv.reader(lines), [])]
            return None if lines.cut else (header or None)
        seen: dict[str, None] = {}
        for i, item in enumerate(read_jsonl(path, limit)):
            if i >= COLUMN_SAMPLE:
                break
            if isinstance(item, SourceRow):
                seen.update(dict.fromkeys(item.data))
        return list(seen) or None  # an empty file offers no columns to check against
    except (OSError, UnicodeDecodeError):
        return None

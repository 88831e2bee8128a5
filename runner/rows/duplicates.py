"""Duplicate-id detection in constant memory: 8-byte hashes in buckets that spill to temp files,
checked at the end; a second pass over the source names the rows (error path only)."""

from __future__ import annotations

import tempfile
from array import array
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from runner.errors import Diagnostic, error

MAX_NAMED: Final = 20


class IdTracker:
    """Remembers every id as an 8-byte hash in 256 buckets that spill to temp files, so memory stays
    flat however many rows there are (10M ids: 80 MB on disk, about 8 MB in memory). Duplicates are
    found at the end, a bucket at a time; naming their rows takes a second pass over the source."""

    BUCKETS: Final = 256
    SPILL: Final = 4096  # hashes a bucket holds in memory before it goes to its file

    def __init__(self) -> None:
        self._buckets = [array("q") for _ in range(self.BUCKETS)]
        self._spill: tempfile.TemporaryDirectory[str] | None = None

    def add(self, custom_id: str) -> None:
        h = hash(custom_id)
        bucket = self._buckets[h % self.BUCKETS]
        bucket.append(h)
        if len(bucket) >= self.SPILL:
            self._flush(h % self.BUCKETS)

    def _path(self, n: int) -> str:
        if self._spill is None:
            self._spill = tempfile.TemporaryDirectory(prefix="batchrun-ids-")
        return f"{self._spill.name}/{n}"

    def _flush(self, n: int) -> None:
        with open(self._path(n), "ab") as fh:
            self._buckets[n].tofile(fh)
        self._buckets[n] = array("q")

    def duplicate_hashes(self) -> set[int]:
        found: set[int] = set()
        try:
            for n, bucket in enumerate(self._buckets):
                hashes = array("q")
                if self._spill is not None and Path(self._path(n)).exists():
                    with open(self._path(n), "rb") as fh:
                        hashes.frombytes(fh.read())
                hashes.extend(bucket)
                seen: set[int] = set()
                for h in hashes:
                    if h in seen:
                        found.add(h)
                    seen.add(h)
        finally:
            if self._spill is not None:
                self._spill.cleanup()
                self._spill = None
        return found


def name_duplicates(ids: Iterable[tuple[int, str, Any]], hashes: set[int],
                    source_name: str) -> list[Diagnostic]:
    """Second pass, on the error path only: (row number, custom_id sent, raw id) triples -> the
    rows of each custom_id sent twice. Two raw ids that send one custom_id (5 and "5", say) are
    both named: that is what the user has to tell apart."""
    first: dict[str, tuple[int, Any]] = {}
    out: list[Diagnostic] = []
    for number, custom_id, raw in ids:
        if hash(custom_id) not in hashes:
            continue
        seen, seen_raw = first.setdefault(custom_id, (number, raw))
        if seen == number or len(out) >= MAX_NAMED:
            continue
        if type(raw) is type(seen_raw) and raw == seen_raw:
            message = f"row {number} (id {raw!r}): duplicate id, first seen at row {seen}"
        else:
            message = (f"row {number} (id {raw!r}): sends custom_id {custom_id!r}, as row {seen} "
                       f"(id {seen_raw!r}) does")
        out.append(error(message, file=source_name, line=number,
                         hint="fix the source row, or filter it out of the source"))
    return out

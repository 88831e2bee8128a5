"""The staged input both job services send: the request lines of a job and their index (which row
each line is), written in one pass under a content digest, and the index read back with a damaged
line named. Knows no store and no plan."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import orjson

from runner.backends.base import IndexEntry
from runner.errors import BackendError, error


def write_staged(rows: Iterable[tuple[bytes, IndexEntry]], input_path: Path,
                 index_path: Path) -> tuple[str, int, int]:
    """Write request lines and their index; return (content digest, rows, bytes).

    The content digest chains the rows' request hashes (each already a hash of the line's bytes),
    rather than hashing every byte a second time."""
    digest = hashlib.sha256()
    count = size = 0
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    with input_path.open("wb") as inp, index_path.open("wb") as idx:
        write_input, write_index, update = inp.write, idx.write, digest.update
        for line, entry in rows:  # the hot loop of staging: locals only
            chunk = line + b"\n"
            write_input(chunk)
            update(entry.request_hash.encode())
            write_index(dumps(entry, option=newline))  # orjson encodes dataclasses natively
            count += 1
            size += len(chunk)
    return digest.hexdigest()[:32], count, size


def read_index(where: object, lines: Iterable[bytes]) -> Iterator[IndexEntry]:
    """A job's staged index; a damaged one names its file and line instead of a JSON error."""
    for number, line in enumerate(lines, start=1):
        try:
            data = orjson.loads(line)
            entry = IndexEntry(**data)
            if not (isinstance(entry.custom_id, str) and isinstance(entry.request_hash, str)
                    and isinstance(entry.passthrough, dict)):
                raise TypeError("a field has the wrong type")
            yield entry
        except (orjson.JSONDecodeError, TypeError) as exc:
            raise BackendError([error(
                f"the index of a job is damaged: {where}, line {number} ({exc})",
                hint="its rows cannot be told apart, so this manifest stops here; restore the "
                     "file, or cancel the job and move the file aside to send its rows again")]
            ) from None

"""Local files for either backend: atomic writes, local sources, and a local file as destination
(JSONL or CSV) with its hidden sidecar listing the jobs already collected into it."""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import orjson

from runner import crashpoints
from runner.answers.result import FIELDS as CSV_FIELDS
from runner.answers.result import JSON_FIELDS as _JSON_FIELDS
from runner.answers.result import LEDGER_FIELDS, missing_ledger_fields
from runner.backends.stores.fileledger import FileLedger, shape_of
from runner.errors import BackendError, ForeignDestinationError, error
from runner.project.paths import sidecar_of
from runner.rows import files as rowfile
from runner.rows.records import AnsweredIn, LedgerRows, RowIssue, SourceRow, Unchanged
from runner.spec import DestinationSpec, SourceKind, SourceSpec

log = logging.getLogger(__name__)
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_writer(path: Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Write to a temp file in the same folder, fsync, then rename over `path`; nothing half-written.
    The file keeps its permissions; a file the user made read-only is refused, never replaced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        current = path.stat().st_mode & 0o777
    except FileNotFoundError:
        current = 0o666 & ~_UMASK  # mkstemp makes 0600; results are ordinary files
    else:
        if not current & 0o200 or not os.access(path, os.W_OK):  # root passes os.access
            raise BackendError([error(f"{path} is read-only; refusing to replace it",
                                      hint="make it writable (chmod u+w) if batchrun should "
                                           "update it")])
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, current)
    try:
        text = "b" not in mode
        with os.fdopen(fd, mode, encoding="utf-8" if text else None,
                       newline="" if text else None) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        crashpoints.reached("atomic-rename")
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, value: Any) -> None:
    with atomic_writer(path) as fh:
        fh.write(orjson.dumps(value, option=orjson.OPT_INDENT_2))


def read_source(source: SourceSpec) -> Iterator[SourceRow | RowIssue]:
    path = Path(source.location)
    if not path.is_file():
        raise BackendError(f"source file {path} does not exist")
    return rowfile.read_rows(path, source.format, source.max_row_bytes)


def source_stamp(source: SourceSpec) -> list[int] | None:
    """The source file's version: a change between plan and apply is noticed without reading it."""
    return rowfile.stamp(Path(source.location))


def destination_stamp(dest: DestinationSpec) -> list[int] | None:
    return rowfile.stamp(Path(dest.location))


def _sidecar(dest: DestinationSpec) -> Path:
    return sidecar_of(Path(dest.location))




def _is_csv(dest: DestinationSpec) -> bool:
    return dest.location.lower().endswith(".csv")


def guard_foreign(dest: DestinationSpec, rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Pass the destination's rows through, refusing one batchrun did not write (unless adopted).
    Judged by content, not the sidecar: a crash may leave our rows without their sidecar."""
    first = next(rows, None)
    if first is None:
        return
    missing = missing_ledger_fields(first)
    if missing:  # adopted or not: rows without an id or a spec cannot be a ledger
        raise ForeignDestinationError(dest.location, missing, adopting=dest.adopt)
    yield first
    yield from rows


def read_destination(dest: DestinationSpec) -> Iterator[dict[str, Any]]:
    log.debug("read destination %s", dest.location)  # counted by the benchmark: one per command
    return guard_foreign(dest, _read_destination(dest))


def _read_destination(dest: DestinationSpec) -> Iterator[dict[str, Any]]:
    path = Path(dest.location)
    if not path.is_file():
        return
    if _is_csv(dest):
        yield from _read_csv_destination(path)
        return
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            if line.strip():
                try:
                    row = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    if number == 1:
                        raise ForeignDestinationError(str(path), adopting=dest.adopt,
                                                      missing=LEDGER_FIELDS) from exc
                    raise BackendError(f"destination {path} line {number} is not JSON; it was "
                                       "edited by hand? Fix or move the file.") from exc
                if not isinstance(row, dict):  # `null`, a number: not a row of ours, ever
                    if number == 1:
                        raise ForeignDestinationError(str(path), adopting=dest.adopt,
                                                      missing=LEDGER_FIELDS)
                    raise BackendError(f"destination {path} line {number} is not a JSON object; "
                                       "it was edited by hand? Fix or move the file.")
                yield row


def _read_csv_destination(path: Path) -> Iterator[dict[str, Any]]:
    """A CSV destination's rows; a cell that is not what batchrun wrote names its line."""
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        try:
            for raw in reader:
                row: dict[str, Any] = dict(raw)
                for key in _JSON_FIELDS:
                    row[key] = json.loads(row[key]) if row.get(key) else None
                row["attempts"] = int(row.get("attempts") or 0)
                yield row
        except (ValueError, csv.Error) as exc:  # bad JSON cell, attempts "many", non-UTF-8 bytes
            raise BackendError([error(
                f"destination {path} line {reader.line_num} is not as batchrun wrote it ({exc})",
                hint="it was edited by hand? Fix the line, or move the file aside (its jobs' "
                     "answers are collected again, not paid again)")]) from None


def collected_jobs(dest: DestinationSpec) -> set[str]:
    """Jobs already merged; forgotten when the result file changed behind batchrun's back, so a
    deleted or replaced result file is re-collected from job outputs rather than paid for again."""
    data = _sidecar_data(dest)
    if not data or data.get("stamp") != rowfile.stamp(Path(dest.location)):
        return set()
    return set(data.get("collected_jobs", ()))


def _sidecar_data(dest: DestinationSpec) -> dict[str, Any]:
    """The sidecar's record; a damaged one reads as empty: jobs are collected again (a replay
    changes nothing), never paid again."""
    sidecar = _sidecar(dest)
    try:
        data = orjson.loads(sidecar.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    if not isinstance(data, dict):
        return {}
    for key in ("collected_jobs", "forgiven_jobs"):
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            data[key] = []  # damaged: forget it (jobs are collected again, a replay is harmless)
    return data


def forgiven_jobs(dest: DestinationSpec) -> set[str]:
    """Failed jobs set aside by `batchrun retry`; kept whatever happened to the result file."""
    return set(_sidecar_data(dest).get("forgiven_jobs", ()))


def forgive_jobs(dest: DestinationSpec, names: Iterable[str]) -> None:
    data = _sidecar_data(dest)
    data.setdefault("stamp", rowfile.stamp(Path(dest.location)))
    data.setdefault("collected_jobs", [])
    data["forgiven_jobs"] = sorted(set(data.get("forgiven_jobs", ())) | set(names))
    write_json(_sidecar(dest), data)


def write_destination(dest: DestinationSpec, merged: Iterable[tuple[dict[str, Any], bool]],
                      collected: Iterable[str], *, append: bool = False) -> None:
    """Replace the file with `merged`, or with `append` keep its bytes and add the rows after them
    (new ids only: no row of it is parsed again); atomically either way."""
    path = Path(dest.location)
    keep = append and path.is_file()
    # The passthrough columns the rows carry (fileledger reads the ledger in DuckDB, which sees no
    # row's keys, only when they are all the manifest's); None: not known.
    shapes: set[frozenset[str]] | None = set()
    if keep:
        record = _sidecar_data(dest)
        known = record.get("shapes") if record.get("stamp") == rowfile.stamp(path) else None
        shapes = {frozenset(s) for s in known} if isinstance(known, list) else None
    if _is_csv(dest):
        # A CSV's header is fixed by its first row: appending could drop a new column, so it is
        # rewritten whole (CSV destinations are for small outputs).
        before = (row for row in _read_csv_destination(path)) if keep else iter(())
        _write_csv(path, itertools.chain(before, (row for row, _ in merged)))
    else:
        with atomic_writer(path) as fh:
            if keep:
                with path.open("rb") as old:
                    shutil.copyfileobj(old, fh)
                    if old.tell() and (old.seek(-1, os.SEEK_END), old.read(1))[1] != b"\n":
                        fh.write(b"\n")  # a last line without its newline: never join two rows
            for row, _ in merged:
                fh.write(orjson.dumps(row))
                fh.write(b"\n")
                if shapes is not None:
                    shapes.add(shape_of(row))
    crashpoints.reached("destination-written")
    write_json(_sidecar(dest), {"stamp": rowfile.stamp(path), "collected_jobs": sorted(set(collected)),
                                "forgiven_jobs": sorted(forgiven_jobs(dest)),
                                "shapes": None if shapes is None or len(shapes) > 4 or _is_csv(
                                    dest) else sorted(sorted(s) for s in shapes)})


def _write_csv(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Every row under one header: custom_id, the passthrough columns any row has (a failed row
    first must not hide a column added since), the result fields. Rows are spooled once to learn
    the header, so memory stays flat."""
    passthrough: dict[str, None] = {}
    with tempfile.TemporaryFile() as spool:
        for row in rows:
            passthrough.update((k, None) for k in row if k not in CSV_FIELDS
                               and k not in LEDGER_FIELDS)
            spool.write(orjson.dumps(row, option=orjson.OPT_PASSTHROUGH_DATETIME,
                                     default=str) + b"\n")
        spool.seek(0)
        with atomic_writer(path, "w") as fh:
            writer = csv.DictWriter(fh, fieldnames=["custom_id", *passthrough, *CSV_FIELDS],
                                    extrasaction="ignore")
            writer.writeheader()
            for line in spool:
                out = orjson.loads(line)
                for key in _JSON_FIELDS:
                    out[key] = json.dumps(out.get(key), ensure_ascii=False) if out.get(
                        key) is not None else ""
                writer.writerow(out)


class FileStore:
    """The store of local files (JSONL, CSV) for either job service: sources read whole (their
    rows' fingerprints skip the rendering), destinations with their sidecar record."""

    def __init__(self) -> None:
        self.ledger = FileLedger()

    def read_source(self, source: SourceSpec, answered: AnsweredIn | None
                    ) -> Iterator[SourceRow | RowIssue | Unchanged]:
        rows = self.ledger.read_source(source, answered)  # what the ledger read left, if it ran
        return read_source(source) if rows is None else rows

    def source_stamp(self, source: SourceSpec) -> list[int] | None:
        return source_stamp(source)

    def read_destination(self, dest: DestinationSpec,
                         columns: Sequence[str] | None) -> Iterator[dict[str, Any]]:
        del columns  # a line is read whole
        return read_destination(dest)

    def read_ledger(self, dest: DestinationSpec, columns: Sequence[str], source: SourceSpec,
                    answered: AnsweredIn) -> LedgerRows | None:
        del columns  # a line is read whole
        if source.kind is not SourceKind.FILE:
            return None
        data = _sidecar_data(dest)
        shaped = data.get("stamp") == rowfile.stamp(Path(dest.location)) and data.get("shapes") == [
            sorted(answered.passthrough)]
        for _ in guard_foreign(dest, _read_destination(dest)):  # refused as the full read would
            break
        return self.ledger.read_ledger(dest, source, answered, shaped)

    def destination_columns(self, dest: DestinationSpec) -> frozenset[str] | None:
        return None  # each row's keys tell

    def destination_stamp(self, dest: DestinationSpec) -> list[int] | None:
        return destination_stamp(dest)

    def collected_jobs(self, dest: DestinationSpec) -> set[str]:
        return collected_jobs(dest)

    def forgiven_jobs(self, dest: DestinationSpec) -> set[str]:
        return forgiven_jobs(dest)

    def write_destination(self, dest: DestinationSpec, rows: Iterable[tuple[dict[str, Any], bool]],
                          collected: Iterable[str], append: bool) -> None:
        write_destination(dest, rows, collected, append=append)

    def forgive_jobs(self, dest: DestinationSpec, names: Iterable[str]) -> None:
        forgive_jobs(dest, names)

    def locations(self, spec: SourceSpec | DestinationSpec) -> Mapping[str, str | None]:
        return {}  # on this machine: everywhere a job runs

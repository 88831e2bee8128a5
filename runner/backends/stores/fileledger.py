"""The ledger of a local JSONL destination read beside its local JSONL source as one DuckDB query:
the source's lines hashed here without parsing them, the destination's rows anti-joined there, so
only what a plan must look at reaches Python — the source rows no answer of the spec settles, and
the destination rows that settle no source row. Reads only; knows no job service.

DuckDB reads the destination (typed, its line numbers by ordinality); it does not hash the source:
numbering lines in a parallel scan serialises it (3.6 s and 1.3 GB at 1M lines, measured), and
this loop hashes them in 0.5 s."""

from __future__ import annotations

import logging
import tempfile
import threading
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from runner.answers.result import ALL_FIELDS
from runner.errors import BackendError, error
from runner.rows import files as rowfile
from runner.rows.idrule import hashed_id, sent_as_is
from runner.rows.records import AnsweredIn, LedgerRows, RowIssue, SourceRow, Unchanged
from runner.spec import DestinationSpec, SourceSpec

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger(__name__)

# The stored rows that settle a source row of the same fingerprint: answered under the spec by the
# current answerer. A row that does not record its answerer is judged in Python (the job's).
_OK = ("status = 'succeeded' AND spec_hash = $spec AND answered_by = $answerer "
       "AND source_fp IS NOT NULL")
_TOKENS = ("CASE WHEN status = 'succeeded' AND json_type(usage) = 'OBJECT' THEN "
           "COALESCE(TRY_CAST(json_extract_string(usage, '$.output_tokens') AS BIGINT), 0) END")
# Peak memory stays under 300 MB at 1M rows (make bench); more spills to a temp directory of ours
# (DuckDB's default is `.tmp` in the working directory: the user's project).
MEMORY_LIMIT = "160MB"
_COLUMNS = ("{custom_id: 'VARCHAR', status: 'VARCHAR', spec_hash: 'VARCHAR', "
            "answered_by: 'VARCHAR', source_fp: 'VARCHAR', usage: 'JSON'}")


@dataclass
class _Read:
    """One source's lines as the ledger read found them, for the source read that follows."""

    stamp: list[int] | None
    unchanged: int
    changed: list[int]  # line numbers no stored answer settles, in order
    issues: list[RowIssue]  # lines too long to hash: reported by the source read
    offsets: array[int] = field(default_factory=lambda: array("Q"))  # by line number - 1


def line_based(source: SourceSpec) -> bool:
    return source.format not in ("csv", "parquet")




class _StoredRead(threading.Thread):
    """DuckDB loaded, connected and reading the destination's ledger columns into table `d`."""

    def __init__(self, path: Path, answered: AnsweredIn, spill: str) -> None:
        super().__init__(name="batchrun-ledger", daemon=True)
        self.path, self.answered, self.spill = path, answered, spill
        self.con: duckdb.DuckDBPyConnection | None = None
        self.failed: BaseException | None = None

    def run(self) -> None:
        try:
            import duckdb

            self.con = duckdb.connect(config={"memory_limit": MEMORY_LIMIT,
                                              "temp_directory": self.spill})
            self.con.execute(
                f"CREATE TABLE d AS SELECT ordinality AS n, custom_id, source_fp AS fp, "
                f"COALESCE(({_OK}), false) AS ok, {_TOKENS} AS tokens FROM read_json("
                f"'{_quoted(str(self.path))}', format = 'newline_delimited', columns = {_COLUMNS})"
                " WITH ORDINALITY",
                {"spec": self.answered.spec_hash, "answerer": self.answered.answered_by})
        except BaseException as exc:  # raised again in the caller's thread
            self.failed = exc

    def close(self) -> None:
        self.join()
        if self.con is not None:
            self.con.close()

    def connection(self) -> duckdb.DuckDBPyConnection:
        self.join()
        if self.failed is not None:
            if self.con is not None:
                self.con.close()
            raise self.failed
        assert self.con is not None
        return self.con


class FileLedger:
    """Reads kept between a plan's ledger read and its source read (the same file, unchanged)."""

    def __init__(self) -> None:
        self._reads: dict[tuple[str, str, str, str], _Read] = {}

    def read_ledger(self, dest: DestinationSpec, source: SourceSpec, answered: AnsweredIn,
                    shaped: bool) -> LedgerRows | None:
        """None where the whole ledger is read in Python instead: not a JSONL file beside a JSONL
        source, stored rows whose passthrough columns are not all the manifest's (`shaped`), a
        row DuckDB cannot read, or ids the source repeats (the full read names their rows)."""
        path, src = Path(dest.location), Path(source.location)
        if (answered.destination_kind != "file" or not line_based(source) or not shaped
                or dest.location.lower().endswith(".csv") or not path.is_file()
                or not src.is_file()):
            return None
        stamp = rowfile.stamp(src)
        with tempfile.TemporaryDirectory(prefix="batchrun-duckdb-") as spill:
            # DuckDB is loaded and reads the destination on one core while this thread hashes the
            # source on the other (DuckDB lets go of the GIL).
            # DuckDB reads a name with [ ] ? * as a pattern: a link of a plain name reads this file.
            link = Path(spill) / "destination.jsonl"
            link.symlink_to(path.resolve())
            stored = _StoredRead(link, answered, spill)
            stored.start()
            with tempfile.NamedTemporaryFile("wb", suffix=".csv") as fps:
                try:
                    with src.open("rb") as fh:
                        offsets, issues = rowfile.hash_lines(fh, source.max_row_bytes, fps.file)
                    fps.flush()
                except BaseException:  # DuckDB let go before its spill directory goes
                    stored.close()
                    raise
                import duckdb

                try:
                    con = stored.connection()
                    try:
                        read = self._query(con, Path(fps.name), src, source, stamp, offsets,
                                           issues)
                    finally:
                        con.close()
                except duckdb.Error as exc:  # a line it cannot read: the Python read reports it
                    log.debug("ledger of %s read in Python: %s", path, exc)
                    return None
        if read is None:
            return None
        rows, pulled, totals = read
        self._reads[_key(source, answered)] = rows
        log.debug("ledger of %s: %s source rows settled in DuckDB, %s stored rows pulled", path,
                  f"{rows.unchanged:,}", f"{len(pulled):,}")
        return LedgerRows(_stored_rows(path, pulled), *totals)

    def _query(self, con: duckdb.DuckDBPyConnection, fps: Path, src: Path, source: SourceSpec,
               stamp: list[int] | None, offsets: array[int], issues: list[RowIssue]
               ) -> tuple[_Read, list[int], tuple[int, int]] | None:
        # A line's fingerprint on its line: its number is its ordinality (blank lines, empty).
        con.execute(f"CREATE TABLE src AS SELECT ordinality AS n, fp FROM read_csv("
                    f"'{_quoted(str(fps))}', columns = {{fp: 'VARCHAR'}}, header = false, "
                    "auto_detect = false, quote = '', escape = '', delim = ',') "
                    "WITH ORDINALITY WHERE fp IS NOT NULL")
        lines = _one(con, "SELECT count(*) FROM src")[0]
        con.execute("CREATE TABLE m AS SELECT src.n AS sn, d.custom_id FROM src JOIN d "
                    "ON src.fp = d.fp AND d.ok")
        pairs, sources, ids = _one(con, "SELECT count(*), count(DISTINCT sn), "
                                        "count(DISTINCT custom_id) FROM m")
        if not (pairs == sources == ids):  # a line twice, or two stored rows for one: the full read
            return None
        changed = [n for (n,) in con.execute(
            "SELECT n FROM src WHERE n NOT IN (SELECT sn FROM m) ORDER BY n").fetchall()]
        if changed and sources and self._id_taken(con, src, offsets, changed, source):
            return None
        pulled = [n for (n,) in con.execute(
            "SELECT n FROM d WHERE NOT (ok AND fp IN (SELECT fp FROM src)) ORDER BY n").fetchall()]
        answered_rows, tokens = _one(con, "SELECT count(tokens), COALESCE(sum(tokens), 0) FROM d")
        read = _Read(stamp, sources, changed, issues, offsets)
        assert sources + len(changed) == lines
        return read, pulled, (int(answered_rows), int(tokens))

    @staticmethod
    def _id_taken(con: duckdb.DuckDBPyConnection, src: Path, offsets: array[int],
                  changed: Sequence[int], source: SourceSpec) -> bool:
        """Whether a changed row would be sent under the id of a row left settled."""
        column, sent = source.id_column, []
        with src.open("rb") as fh:
            for number in changed:
                row = rowfile.row_at(fh, number, offsets[number - 1])
                if type(row) is SourceRow:
                    value = row.data.get(column)
                    if isinstance(value, str | int) and not isinstance(value, bool):
                        text = str(value)
                        sent.append(hashed_id(text) if source.id_hash and not sent_as_is(
                            text, source.max_id_chars, True) else text)
        found = con.execute("SELECT count(*) FROM m WHERE custom_id IN (SELECT unnest($ids))",
                            {"ids": sent}).fetchone()
        return bool(found and found[0])

    def read_source(self, source: SourceSpec, answered: AnsweredIn | None
                    ) -> Iterator[SourceRow | RowIssue | Unchanged] | None:
        """The source rows the ledger read left to the plan, or None when it read none."""
        read = self._reads.pop(_key(source, answered), None) if answered else None
        if read is None:
            return None
        return self._rows(Path(source.location), read)

    @staticmethod
    def _rows(path: Path, read: _Read) -> Iterator[SourceRow | RowIssue | Unchanged]:
        if rowfile.stamp(path) != read.stamp:
            raise BackendError([error(f"{path} changed while the plan read it",
                                      hint="run the plan again")])
        yield Unchanged(read.unchanged)
        yield from read.issues
        with path.open("rb") as fh:
            for number in read.changed:
                yield rowfile.row_at(fh, number, read.offsets[number - 1])


def _key(source: SourceSpec, answered: AnsweredIn | None) -> tuple[str, str, str, str]:
    assert answered is not None
    return (source.location, answered.destination, answered.spec_hash, answered.answered_by)


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[Any, ...]:
    found = con.execute(sql).fetchone()
    assert found is not None
    return tuple(found)


def _quoted(path: str) -> str:
    return path.replace("'", "''")


def _stored_rows(path: Path, numbers: Sequence[int]) -> Iterator[dict[str, Any]]:
    """The destination's rows at these line numbers (1-based, blank lines not counted: DuckDB's)."""
    if not numbers:
        return
    wanted, i = set(numbers), 0
    with path.open("rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            i += 1
            if i in wanted:
                yield orjson.loads(line)


def shape_of(row: dict[str, Any]) -> frozenset[str]:
    """The passthrough columns a stored row carries: every key that is not a result field."""
    return frozenset(row.keys() - ALL_FIELDS)

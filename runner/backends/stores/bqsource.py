"""A BigQuery source, read by BigQuery's own lifting: each row's fingerprint is computed in SQL, and
rows a BigQuery destination already answered are left out by an anti-join there, so only the
change reaches this machine. Reads only: a query source runs only when a dry run says SELECT."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from runner.backends.stores import sqlnames
from runner.identity import VERTEX_ANSWERER
from runner.rows.idrule import HASH_HEX, HASHED_SHAPE, ID_CHARS
from runner.rows.records import AnsweredIn, LedgerRows, SourceRow, Unchanged

if TYPE_CHECKING:
    from runner.backends.stores.bq import BigQuery

log = logging.getLogger(__name__)

FP = "batchrun_source_fp__"  # the fingerprint column added to the source's own
ROW = "batchrun_source_row__"  # the source row's alias: a name no column is likely to have
# The manifest's fields the names come from, for a refusal's location (the row pass places it).
ID = "spec.source.id"
SOURCE_TABLE = "spec.source.bigquery.table"
DESTINATION = "spec.destination.bigquery.table"


def schema_salt(schema: Any) -> str:
    """The columns' names and types: a row's values print alike across types in JSON (an INT64 1
    and a FLOAT64 1.0 may), and the prompt would not, so a type change is a change."""
    text = ";".join(f"{f.name}:{f.field_type}:{f.mode}" for f in schema)
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def fingerprinted(source: str) -> str:
    """The source's rows with their fingerprint (`@salt`: schema_salt of its columns)."""
    # MD5 rather than FARM_FINGERPRINT: as fast in BigQuery, and native in the emulator (whose
    # FARM_FINGERPRINT runs 5k rows/s); 96 bits, like the fingerprint of a file's rows.
    return (f"SELECT {ROW}.*, SUBSTR(TO_HEX(MD5(CONCAT(@salt, TO_JSON_STRING({ROW})))), 1, 24) "
            f"AS {FP} FROM {source} AS {ROW}")


def sent_id(column: str, field_type: str, *, id_hash: bool, max_chars: int) -> str:
    """The custom_id rendering sends for the id column `column`, in SQL (runner/rows/idrule.py's rule;
    tests pin that they agree): so the rows left in BigQuery are checked on the ids they were sent
    under. An id sent as it is, or refused when rendered, is grouped as it is."""
    name = sqlnames.column(column, field=ID)
    if not id_hash or field_type not in ("STRING", "INTEGER", "INT64"):
        return name
    text = name if field_type == "STRING" else f"CAST({name} AS STRING)"
    as_is = (f"LENGTH({text}) <= {int(max_chars)} AND REGEXP_CONTAINS({text}, r'^{ID_CHARS}$') "
             f"AND NOT REGEXP_CONTAINS({text}, r'^{HASHED_SHAPE}$')")
    return f"IF({as_is}, {text}, CONCAT('h', SUBSTR(TO_HEX(SHA256({text})), 1, {HASH_HEX})))"


class SourceRead:
    """One read of a table or query source, fingerprinted in SQL; with `answered`, the answered
    rows are counted and left out there."""

    def __init__(self, bq: BigQuery, table: str | None, query: str | None,
                 answered: AnsweredIn | None) -> None:
        self.bq, self.table, self.query, self.answered = bq, table, query, answered
        self.what = table or "the query"
        self.dest_columns: set[str] = set()  # the destination's, read once by _joinable
        self.dest = ""  # the destination, quoted (by _with)

    def _source(self) -> tuple[str, list[Any]]:
        """The source as SQL to select from (a query runs only if a dry run says SELECT), and the
        parameters of its fingerprint."""
        from google.cloud import bigquery

        if self.query is not None:
            schema = self.bq.check_select(self.query)
            source = "(\n" + self.query.strip().rstrip(";") + "\n)"
        else:
            assert self.table is not None
            source = sqlnames.table(self.table, field=SOURCE_TABLE)  # refused before it is asked
            schema = self.bq.client.get_table(self.table, retry=self.bq.retry).schema
        self.columns = {f.name for f in schema}
        self.types = {f.name: str(f.field_type) for f in schema}
        return source, [bigquery.ScalarQueryParameter("salt", "STRING", schema_salt(schema))]

    def _with(self, source: str, params: list[Any]) -> str | None:
        """The CTEs `src` (fingerprinted rows) and `done` (fingerprints answered under the spec),
        when the answered rows can be told in SQL; None when not."""
        from google.cloud import bigquery

        answered = self.answered
        if answered is None or answered.destination_kind != "bigquery":
            return None
        # The names are checked whether or not this read can use them: a later one will, once
        # the table records fingerprints, and a plan refuses before anything is paid for.
        self.dest = sqlnames.table(answered.destination, field=DESTINATION)
        self._sent_id()
        if not self._joinable(answered):
            return None
        params.append(bigquery.ScalarQueryParameter("spec", "STRING", answered.spec_hash))
        params.append(bigquery.ScalarQueryParameter("answerer", "STRING", answered.answered_by))
        return (f"WITH src AS ({fingerprinted(source)}), done AS (SELECT DISTINCT source_fp FROM "
                f"{self.dest} WHERE status = 'succeeded' AND spec_hash = @spec AND "
                f"{self._ours('')} AND source_fp IS NOT NULL)")

    def _ours(self, alias: str) -> str:
        """SQL: the row's answer was made by the current answerer. A row from before rows recorded
        it is the vertex backend's: only it writes BigQuery tables (identity.same_answerer)."""
        if "answered_by" not in self.dest_columns:
            return f"'{VERTEX_ANSWERER}' = @answerer"
        return f"COALESCE({alias}answered_by, '{VERTEX_ANSWERER}') = @answerer"

    def _sent_id(self) -> str:
        answered = self.answered
        assert answered is not None
        return sent_id(answered.id_column, self.types.get(answered.id_column, ""),
                       id_hash=answered.id_hash, max_chars=answered.max_id_chars)

    def _duplicated_sql(self) -> str:
        """How many custom_ids the source would send twice or more (scalar subquery over `src`):
        the ids sent, not the column's values, which `hash: true` rewrites."""
        return (f"(SELECT COUNT(*) FROM (SELECT {self._sent_id()} FROM src GROUP BY 1 "
                "HAVING COUNT(*) > 1))")

    def _duplicated(self, with_: str, params: list[Any]) -> bool:
        """Duplicate ids are reported by the full read, which names their rows."""
        found = next(iter(self.bq.query(f"{with_} SELECT {self._duplicated_sql()} AS n", params)))
        return bool(found["n"])

    def rows(self) -> Iterator[SourceRow | Unchanged]:
        source, params = self._source()
        sql = fingerprinted(source)
        with_ = self._with(source, params)
        # One scan tells both: whether ids repeat, and how many rows are answered.
        counted = None if with_ is None else next(iter(self.bq.query(
            f"{with_} SELECT {self._duplicated_sql()} AS duplicated, (SELECT COUNT(*) FROM src "
            f"JOIN done ON src.{FP} = done.source_fp) AS n", params)))
        if with_ is not None and counted is not None and not counted["duplicated"]:
            assert self.answered is not None
            yield Unchanged(int(counted["n"]))
            order = sqlnames.column(self.answered.id_column, field=ID)
            sql = (f"{with_} SELECT src.* FROM src LEFT JOIN done ON src.{FP} = "
                   f"done.source_fp WHERE done.source_fp IS NULL "
                   f"ORDER BY src.{order}")  # the change only: cheap to order
            log.debug("read source %s: %s rows recognised answered in BigQuery", self.what,
                      f"{counted['n']:,}")
        number = 0
        for number, row in enumerate(self.bq.query(sql, params), start=1):
            data = self.bq.plain_row(row)
            fp = data.pop(FP)
            self.bq.pulled += 1
            yield SourceRow(number, data, str(fp))
        log.debug("read source %s: %s rows pulled to the client", self.what, f"{number:,}")

    def ledger(self, columns: Sequence[str]) -> LedgerRows | None:
        """The destination's ledger rows but those answered under the spec for a row the source
        still holds unchanged (they stay in BigQuery, like that row), with the totals the
        estimate needs over every row; None when the source read would not leave rows there."""
        source, params = self._source()
        with_ = self._with(source, params)
        if with_ is None or self._duplicated(with_, params):
            return None
        have = self.dest_columns
        quoted = {c: sqlnames.column(c) for c in columns}  # every one asked, read or not
        picked = ", ".join(f"d.{quoted[c]}" for c in columns if c in have)
        usage = "usage" in have
        totals = next(iter(self.bq.query(
            f"SELECT COUNTIF(status = 'succeeded' AND {'usage IS NOT NULL' if usage else 'FALSE'})"
            f" AS answered, " + (
                "SUM(IF(status = 'succeeded' AND usage IS NOT NULL, COALESCE(SAFE_CAST("
                "JSON_VALUE(usage, '$.output_tokens') AS INT64), 0), 0))" if usage else "0")
            + f" AS output_tokens FROM {self.dest}")))
        sql = (f"WITH src AS ({fingerprinted(source)}), seen AS (SELECT DISTINCT {FP} AS fp FROM "
               f"src) SELECT {picked} FROM {self.dest} AS d LEFT JOIN seen ON d.source_fp = seen.fp "
               f"WHERE NOT COALESCE(d.status = 'succeeded' AND d.spec_hash = @spec AND "
               f"{self._ours('d.')} AND seen.fp IS NOT NULL, FALSE)")
        return LedgerRows(self.bq.ledger_rows(sql, params), int(totals["answered"] or 0),
                          int(totals["output_tokens"] or 0))

    def _joinable(self, answered: AnsweredIn) -> bool:
        """Whether the answered rows can be told in SQL: a BigQuery destination table that records
        fingerprints, and an id column the source has."""
        if answered.destination_kind != "bigquery" or answered.id_column not in self.columns:
            return False
        self.dest_columns = set(self.bq.columns(answered.destination) or ())
        # A passthrough column the table lacks: every stored row is to be reshaped, none left there.
        return {"source_fp", "status", "spec_hash", *answered.passthrough} <= self.dest_columns

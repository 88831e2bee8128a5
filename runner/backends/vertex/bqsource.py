"""A BigQuery source, read by BigQuery's own lifting: each row's fingerprint is computed in SQL, and
rows a BigQuery destination already answered are left out by an anti-join there, so only the
change reaches this machine. Reads only: a query source runs only when a dry run says SELECT."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from runner.rows import AnsweredIn, SourceRow, Unchanged

if TYPE_CHECKING:
    from runner.backends.vertex.bq import BigQuery

log = logging.getLogger(__name__)

FP = "batchrun_source_fp__"  # the fingerprint column added to the source's own
ROW = "batchrun_source_row__"  # the source row's alias: a name no column is likely to have


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


class SourceRead:
    """One read of a table or query source, fingerprinted in SQL; with `answered`, the answered
    rows are counted and left out there."""

    def __init__(self, bq: BigQuery, table: str | None, query: str | None,
                 answered: AnsweredIn | None) -> None:
        self.bq, self.table, self.query, self.answered = bq, table, query, answered

    def rows(self) -> Iterator[SourceRow | Unchanged]:
        from google.cloud import bigquery

        if self.query is not None:
            schema = self.bq.check_select(self.query)
            source = "(\n" + self.query.strip().rstrip(";") + "\n)"
        else:
            assert self.table is not None
            schema = self.bq.client.get_table(self.table, retry=self.bq.retry).schema
            source = f"`{self.table}`"
        salt = schema_salt(schema)
        params = [bigquery.ScalarQueryParameter("salt", "STRING", salt)]
        sql = fingerprinted(source)
        answered = self.answered
        what = self.table or "the query"
        if answered is not None and self._joinable(answered, schema):
            params.append(bigquery.ScalarQueryParameter("spec", "STRING", answered.spec_hash))
            with_ = (f"WITH src AS ({sql}), done AS (SELECT DISTINCT source_fp FROM "
                     f"`{answered.destination}` WHERE status = 'succeeded' AND spec_hash = @spec "
                     f"AND source_fp IS NOT NULL)")
            counts = next(iter(self.bq.query(
                f"{with_} SELECT (SELECT COUNT(*) FROM src JOIN done ON src.{FP} = done.source_fp)"
                f" AS unchanged, (SELECT COUNT(*) FROM (SELECT `{answered.id_column}` FROM src "
                f"GROUP BY 1 HAVING COUNT(*) > 1)) AS duplicated", params)))
            # Duplicate ids are reported by the full read, which names their rows.
            if not counts["duplicated"]:
                yield Unchanged(int(counts["unchanged"]))
                sql = (f"{with_} SELECT src.* FROM src LEFT JOIN done ON src.{FP} = "
                       f"done.source_fp WHERE done.source_fp IS NULL "
                       f"ORDER BY src.`{answered.id_column}`")  # the change only: cheap to order
                log.debug("read source %s: %s rows recognised answered in BigQuery", what,
                          f"{counts['unchanged']:,}")
        number = 0
        for number, row in enumerate(self.bq.query(sql, params), start=1):
            data = self.bq.plain_row(row)
            fp = data.pop(FP)
            self.bq.pulled += 1
            yield SourceRow(number, data, str(fp))
        log.debug("read source %s: %s rows pulled to the client", what, f"{number:,}")

    def _joinable(self, answered: AnsweredIn, schema: Any) -> bool:
        """Whether the answered rows can be told in SQL: a BigQuery destination table that records
        fingerprints, and an id column the source has."""
        if answered.destination_kind != "bigquery":
            return False
        if answered.id_column not in {f.name for f in schema}:
            return False
        columns = self.bq.columns(answered.destination)
        return columns is not None and {"source_fp", "status", "spec_hash"} <= set(columns)

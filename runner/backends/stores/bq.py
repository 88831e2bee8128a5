"""BigQuery for the vertex backend: stream a table or query source, stage request rows as an input
table beside the source, read job output tables, and MERGE answers into a destination keyed on id."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import orjson

from runner.answers.result import BIGQUERY_JSON, BIGQUERY_TYPES, BIGQUERY_VECTOR
from runner.backends.stores import sqlnames
from runner.errors import BackendError, error
from runner.rows.records import AnsweredIn, LedgerRows, SourceRow, Unchanged
from runner.rows.values import plain as _plain

log = logging.getLogger(__name__)


class UnsafeQueryError(BackendError):
    """A query source that is not a single SELECT: never run, whoever asks."""

    def __init__(self, statement_type: str) -> None:
        self.statement_type = statement_type
        super().__init__([error(
            f"refusing to run a query source that BigQuery reads as a {statement_type} statement; "
            "only a single SELECT may be a source",
            hint="a source must only read: remove DDL, DML, scripts and procedure calls")])


class UnsafeStatementError(BackendError):
    """A statement batchrun built that BigQuery reads as another kind, or as several: never run."""

    def __init__(self, statement_type: str, expected: str) -> None:
        self.statement_type = statement_type
        super().__init__([error(
            f"refusing to run a statement batchrun built: BigQuery reads it as a {statement_type} "
            f"statement, not one {expected}",
            hint="a name from the manifest or the source must have changed what it says; check "
                 "the id, passthrough and table names, and report it if they look ordinary")])


PAGE_ROWS = 10_000
# The manifest's fields the names come from, for the refusal's location (the row pass places it).
DESTINATION = "spec.destination.bigquery.table"
PASSTHROUGH = "spec.passthrough"


def make_client(project: str) -> Any:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    endpoint = os.environ.get("BATCHRUN_BIGQUERY_ENDPOINT")
    if endpoint:
        return bigquery.Client(project=project, credentials=AnonymousCredentials(),
                               client_options={"api_endpoint": endpoint})
    return bigquery.Client(project=project)


def json_or_text(value: Any) -> Any:
    """JSON text from a table cell -> its value; anything else as it is."""
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


class BigQuery:
    def __init__(self, project: str, client: Any = None, *, deadline: float = 60.0) -> None:
        from google.cloud import bigquery

        self.project = project
        self.client = client if client is not None else make_client(project)
        self.retry = bigquery.DEFAULT_RETRY.with_deadline(deadline)
        self.timeout = max(deadline, 60.0)
        self._locations: dict[str, str | None] = {}  # dataset -> location, read once
        self.pulled = 0  # source rows that reached this machine (a BigQuery source's cost here)
        self.ledger_read = 0  # destination ledger rows that did
        # What BigQuery read each statement batchrun built as, by its text: asked once a command
        # (apply --wait plans again every few seconds with the same statements).
        self._kinds: dict[str, str] = {}

    def _dry_run(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """A dry run: BigQuery parses and plans the statement, reads nothing, writes nothing and
        bills nothing, and says which kind of statement it is (SCRIPT for several)."""
        from google.cloud import bigquery

        return self.client.query(sql, job_config=bigquery.QueryJobConfig(
            dry_run=True, use_query_cache=False, query_parameters=list(params)),
            retry=self.retry)

    def run(self, sql: str, params: Sequence[Any] = (), *, expect: str) -> Any:
        """The job of a statement batchrun built, started only once a dry run says BigQuery reads
        it as one `expect` statement: a name that slipped past sqlnames, or a mistake of ours,
        can never make a read write or a MERGE delete. The only door to client.query for them."""
        from google.cloud import bigquery

        kind = self._kinds.get(sql)
        if kind is None:
            # The emulator and BigQuery both say SELECT, MERGE, ... or SCRIPT. A server that says
            # nothing gets UNKNOWN, refused: no statement runs unchecked, whatever it costs.
            kind = self._kinds[sql] = str(self._dry_run(sql, params).statement_type or "UNKNOWN")
        if kind != expect:
            raise UnsafeStatementError(kind, expect)
        config = bigquery.QueryJobConfig(query_parameters=list(params))
        return self.client.query(sql, job_config=config, retry=self.retry)

    def query(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """A read batchrun built (checked to be one SELECT), its rows paged."""
        return self.run(sql, params, expect="SELECT").result(timeout=self.timeout,
                                                              page_size=PAGE_ROWS)

    def check_select(self, sql: str) -> Any:
        """The schema of a query source, when a dry run says it is one SELECT (it reads nothing,
        writes nothing, costs nothing): a source may never write, and plans run it. Asked each
        time: its schema is the fingerprint's salt, and may change during apply --wait."""
        from google.api_core.exceptions import BadRequest

        try:
            job = self._dry_run(sql)
        except BadRequest as exc:  # the user's SQL: said as theirs, located at the query
            said = [e.get("message") for e in (exc.errors or []) if isinstance(e, dict)]
            reason = " ".join(str(said[0] if said and said[0] else exc.message).split())
            raise BackendError([error(f"BigQuery cannot run the source query: {reason[:400]}",
                                      path="spec.source.bigquery.query",
                                      hint="fix the query (try it in the BigQuery console "
                                           "with a dry run)")]) from None
        kind = str(job.statement_type or "UNKNOWN")
        if kind != "SELECT":
            raise UnsafeQueryError(kind)
        return job.schema or []

    def read_rows(self, table: str | None = None, query: str | None = None,
                  answered: AnsweredIn | None = None) -> Iterator[SourceRow | Unchanged]:
        """Stream a table or a query's result with each row's fingerprint computed in SQL; with
        `answered`, the rows a BigQuery destination answered stay there (bqsource)."""
        from runner.backends.stores.bqsource import SourceRead

        return SourceRead(self, table, query, answered).rows()

    def read_ledger(self, table: str | None, query: str | None, answered: AnsweredIn,
                    columns: Sequence[str]) -> LedgerRows | None:
        """The destination's ledger rows that the source's anti-join does not settle (bqsource)."""
        from runner.backends.stores.bqsource import SourceRead

        return SourceRead(self, table, query, answered).ledger(columns)

    @staticmethod
    def plain_row(row: Any) -> dict[str, Any]:
        return {k: _plain(v) for k, v in dict(row).items()}

    def table_exists(self, table: str) -> bool:
        from google.api_core.exceptions import NotFound

        try:
            self.client.get_table(table, retry=self.retry)
        except NotFound:
            return False
        return True

    def check_dataset(self, table: str) -> None:
        """The dataset of `table` exists (NotFound, explained by the backend, when it does not)."""
        project, dataset, _ = table.split(".", 2)
        self.client.get_dataset(f"{project}.{dataset}", retry=self.retry)

    def delete_table(self, table: str) -> None:
        self.client.delete_table(table, not_found_ok=True, retry=self.retry)

    def dataset_location(self, dataset: str) -> str | None:
        """Where a dataset lives ("US", "us-east5"), None when it does not exist yet. Asked once
        per command: apply --wait plans every few seconds, and a dataset does not move."""
        from google.api_core.exceptions import NotFound

        if dataset in self._locations:
            return self._locations[dataset]
        try:
            found = self.client.get_dataset(dataset, retry=self.retry)
        except NotFound:
            return None
        location = self._locations[dataset] = str(found.location) if found.location else None
        return location

    def columns(self, table: str) -> list[str] | None:
        """The table's columns, or None when it does not exist."""
        from google.api_core.exceptions import NotFound

        try:
            return [f.name for f in self.client.get_table(table, retry=self.retry).schema]
        except NotFound:
            return None

    def created(self, table: str) -> str | None:
        from google.api_core.exceptions import NotFound

        try:
            created = self.client.get_table(table, retry=self.retry).created
        except NotFound:
            return None
        return created.isoformat() if created else "unknown"

    def stage_requests(self, table: str, lines: Iterable[bytes], claude: bool) -> None:
        """An input table of request rows (content-addressed name: an existing one is reused):
        `claude` (Claude's and Gemini's), custom_id and a JSON request column; else OpenAI's."""
        from google.cloud import bigquery

        if self.table_exists(table):
            return
        if claude:
            schema = [bigquery.SchemaField("custom_id", "STRING"),
                      bigquery.SchemaField("request", "JSON")]
        else:
            schema = [bigquery.SchemaField(name, kind) for name, kind in (
                ("custom_id", "STRING"), ("method", "STRING"), ("url", "STRING"),
                ("body", "JSON"))]
        rows = [orjson.loads(line) for line in lines]
        config = bigquery.LoadJobConfig(schema=schema, source_format="NEWLINE_DELIMITED_JSON",
                                        write_disposition="WRITE_TRUNCATE")
        self.client.load_table_from_json(rows, table, job_config=config).result(
            timeout=self.timeout)

    def output_rows(self, table: str) -> Iterator[dict[str, Any]]:
        for row in self.client.list_rows(table.removeprefix("bq://"), page_size=PAGE_ROWS,
                                         retry=self.retry):
            yield {k: json_or_text(_plain(v)) for k, v in dict(row).items()}

    def modified(self, table: str) -> list[Any] | None:
        """The table's version (modification time and row count), None when it does not exist."""
        from google.api_core.exceptions import NotFound

        try:
            got = self.client.get_table(table, retry=self.retry)
        except NotFound:
            return None
        return [got.modified.isoformat() if got.modified else None, got.num_rows]

    def destination_rows(self, table: str,
                         columns: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
        # Names first, even when no SQL is to be run yet: the first plan refuses the name a
        # later collect would MERGE into, before anything is paid for.
        target = sqlnames.table(table, field=DESTINATION)
        sql = None if columns is None else (
            f"SELECT {', '.join(sqlnames.column(c) for c in columns)} FROM {target}")
        if not self.table_exists(table):
            return
        if sql is None:
            log.debug("read destination %s", table)
            rows: Iterable[Any] = self.client.list_rows(table, page_size=PAGE_ROWS,
                                                        retry=self.retry)
        else:  # the ledger: a query of its columns alone, never a scan of the answers
            job = self.run(sql, expect="SELECT")
            rows = job.result(page_size=PAGE_ROWS, timeout=self.timeout)
            log.debug("read destination %s (the ledger columns): %s bytes scanned", table,
                      f"{job.total_bytes_processed or 0:,}")
        for row in _decoded(rows):
            self.ledger_read += columns is not None
            yield row

    def ledger_rows(self, sql: str, params: Sequence[Any]) -> Iterator[dict[str, Any]]:
        """The ledger rows a query of the destination picked (bqsource's, beside its source)."""
        job = self.run(sql, params, expect="SELECT")
        rows = job.result(page_size=PAGE_ROWS, timeout=self.timeout)
        count = 0
        for row in _decoded(rows):
            count += 1
            self.ledger_read += 1
            yield row
        log.debug("read destination (the ledger rows its source does not settle): %s rows, %s "
                  "bytes scanned", f"{count:,}", f"{job.total_bytes_processed or 0:,}")

    def merge(self, table: str, rows: Iterable[Mapping[str, Any]], *,
              vectors: bool = False) -> int:
        """MERGE the given rows into `table` keyed on custom_id: reruns never duplicate or lose a
        row. With `vectors` (embeddings), a table made here holds `output` as ARRAY<FLOAT64>."""
        from google.cloud import bigquery

        batch = [dict(r) for r in rows]
        if not batch:
            return 0
        columns = list(batch[0])
        stage = f"{table}__batchrun_stage_{secrets.token_hex(4)}"
        # Every name checked before BigQuery hears of any: a refused one adds no column, no table.
        target, staged = (sqlnames.table(t, field=DESTINATION) for t in (table, stage))
        quoted = {c: sqlnames.column(c, field=None if c in BIGQUERY_TYPES else PASSTHROUGH)
                  for c in columns}
        existing = self.client.get_table(table, retry=self.retry) if self.table_exists(
            table) else None
        known = {f.name: f for f in existing.schema} if existing is not None else {}

        def field(c: str) -> Any:
            if vectors and c == "output":
                kind, mode = BIGQUERY_VECTOR
                return bigquery.SchemaField(c, kind, mode=mode)
            return bigquery.SchemaField(c, BIGQUERY_TYPES.get(c) or _type_of(batch, c))

        new = [c for c in columns if known and c not in known]
        if new and existing is not None:  # a field added since the table was made (source_fp)
            try:
                existing.schema = [*existing.schema, *(field(c) for c in new)]
                self.client.update_table(existing, ["schema"], retry=self.retry)
                known.update({c: field(c) for c in new})
            except Exception as exc:
                log.warning("could not add %s to %s (%s); they are not stored", new, table, exc)
                columns = [c for c in columns if c not in new]
        cols = ", ".join(quoted[c] for c in columns)
        sets = ", ".join(f"{quoted[c]} = S.{quoted[c]}" for c in columns if c != "custom_id")
        values = ", ".join(f"S.{quoted[c]}" for c in columns)
        schema = [known.get(c) or field(c) for c in columns]
        if not known:
            self.client.create_table(bigquery.Table(table, schema=schema), exists_ok=True,
                                     retry=self.retry)
        config = bigquery.LoadJobConfig(schema=schema, source_format="NEWLINE_DELIMITED_JSON",
                                        write_disposition="WRITE_TRUNCATE")
        self.client.load_table_from_json([_encode(r, schema) for r in batch], stage,
                                         job_config=config).result(timeout=self.timeout)
        try:
            # Checked once the stage exists: a dry run resolves the tables it names.
            self.run(f"MERGE {target} T USING {staged} S ON T.custom_id = S.custom_id "
                     f"WHEN MATCHED THEN UPDATE SET {sets} "
                     f"WHEN NOT MATCHED THEN INSERT ({cols}) VALUES ({values})",
                     expect="MERGE").result(timeout=self.timeout)
        finally:
            self.client.delete_table(stage, not_found_ok=True, retry=self.retry)
        return len(batch)


def _decoded(rows: Iterable[Any]) -> Iterator[dict[str, Any]]:
    for row in rows:
        data = {k: _plain(v) for k, v in dict(row).items()}
        for key in BIGQUERY_JSON:
            data[key] = json_or_text(data.get(key))
        if data.get("output") == [] and data.get("status") != "succeeded":
            data["output"] = None  # the empty ARRAY<FLOAT64> of a row without a vector
        yield data


def _type_of(rows: list[dict[str, Any]], column: str) -> str:
    for row in rows:
        value = row.get(column)
        if value is None:
            continue
        if isinstance(value, bool):
            return "BOOL"
        if isinstance(value, int):
            return "INT64"
        if isinstance(value, float):
            return "FLOAT64"
        return "STRING" if isinstance(value, str) else "JSON"
    return "STRING"


def _encode(row: Mapping[str, Any], schema: list[Any]) -> dict[str, Any]:
    out = {}
    for field in schema:
        value = row.get(field.name)
        if field.field_type == "STRING" and value is not None and not isinstance(value, str):
            value = orjson.dumps(value).decode()
        elif field.mode == "REPEATED" and not isinstance(value, list):
            value = []  # a failed row has no vector; an ARRAY holds no NULL
        out[field.name] = value
    return out

"""The BigQuery store: tables and SELECT queries as sources (fingerprints computed in SQL), a table
as destination (MERGEd by custom_id) with its collected record under staging, and the ledger read
beside a BigQuery source in one query. Knows no job service; the backend checks its leases
before each write."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from runner.answers.result import missing_ledger_fields
from runner.backends.stores.bq import BigQuery
from runner.backends.stores.records import CloudRecorded, CloudRecords
from runner.errors import ForeignDestinationError
from runner.rows.records import AnsweredIn, LedgerRows, RowIssue, SourceRow, Unchanged
from runner.spec import DestinationSpec, SourceKind, SourceSpec


class BigQueryStore(CloudRecorded):
    def __init__(self, bq: BigQuery, records: CloudRecords) -> None:
        self.bq = bq
        self.records = records

    def read_source(self, source: SourceSpec, answered: AnsweredIn | None
                    ) -> Iterator[SourceRow | RowIssue | Unchanged]:
        if source.is_query:
            return self.bq.read_rows(query=source.location, answered=answered)
        return self.bq.read_rows(table=source.location, answered=answered)

    def source_stamp(self, source: SourceSpec) -> Any:
        return None if source.is_query else self.bq.modified(source.location)

    def _ledger_columns(self, dest: DestinationSpec) -> list[str] | None:
        """A destination table's columns (None: no table yet); one without the ledger's: refused."""
        table_columns = self.bq.columns(dest.location)
        if table_columns is not None and missing_ledger_fields(table_columns):
            raise ForeignDestinationError(dest.location, missing_ledger_fields(table_columns),
                                          adopting=dest.adopt)
        return table_columns

    def read_destination(self, dest: DestinationSpec,
                         columns: Sequence[str] | None) -> Iterator[dict[str, Any]]:
        table_columns = self._ledger_columns(dest)
        if table_columns is None:  # no table yet: its dataset must exist, or collect would fail
            self.bq.check_dataset(dest.location)
        wanted = None if columns is None or table_columns is None else [
            c for c in columns if c in table_columns]  # a table from an older batchrun
        return self.bq.destination_rows(dest.location, wanted)

    def read_ledger(self, dest: DestinationSpec, columns: Sequence[str], source: SourceSpec,
                    answered: AnsweredIn) -> LedgerRows | None:
        # Pushed down only beside a BigQuery source: the anti-join runs where both tables live.
        if source.kind is not SourceKind.BIGQUERY or self._ledger_columns(dest) is None:
            return None
        table, query = (None, source.location) if source.is_query else (source.location, None)
        return self.bq.read_ledger(table, query, answered, columns)

    def destination_columns(self, dest: DestinationSpec) -> frozenset[str] | None:
        columns = self._ledger_columns(dest)
        return None if columns is None else frozenset(columns)

    def destination_stamp(self, dest: DestinationSpec) -> Any:
        return self.bq.modified(dest.location)

    def _version(self, dest: DestinationSpec) -> str | None:
        # The record's version is the table's creation: a MERGE changes `modified`, a table
        # dropped and made again changes this.
        return self.bq.created(dest.location)

    def write_destination(self, dest: DestinationSpec, rows: Iterable[tuple[dict[str, Any], bool]],
                          collected: Iterable[str], append: bool) -> None:
        del append  # a MERGE by custom_id: only the changed rows are sent either way
        self.bq.merge(dest.location, (row for row, changed in rows if changed),
                      vectors=dest.vectors)
        self.records.written(dest, collected, self._version)

    def locations(self, spec: SourceSpec | DestinationSpec) -> Mapping[str, str | None]:
        if isinstance(spec, SourceSpec) and spec.is_query:
            return {}  # a query's tables are its own business
        dataset = ".".join(spec.location.split(".")[:2])
        return {dataset: self.bq.dataset_location(dataset)}

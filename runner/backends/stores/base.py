"""The interface of a store of one kind (local files, Cloud Storage, BigQuery) — its sources' rows and
versions, its destinations' rows, columns, versions and records, the answers written there — and
`StoredRows`, the row half of every job-service backend, which hands each call to the store of
the spec's kind: the one place a kind is switched on. Knows no job service and no plan."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from runner.rows.records import AnsweredIn, LedgerRows, RowIssue, SourceRow, Unchanged
from runner.spec import DestinationSpec, SourceSpec

Rows = Iterator[SourceRow | RowIssue | Unchanged]


class Store(Protocol):
    """Where one kind of rows and answers lives. Writes come from the backend's write methods
    only (the one-writer contract), each after the backend's own check (Vertex: its leases)."""

    def read_source(self, source: SourceSpec, answered: AnsweredIn | None) -> Rows:
        """The source's rows; `answered`, where the store can use it, skips rendering the rows
        already answered under this spec (Unchanged)."""

    def source_stamp(self, source: SourceSpec) -> Any:
        """The source's version (a saved plan is stale once it changes); None: unknowable."""

    def read_destination(self, dest: DestinationSpec,
                         columns: Sequence[str] | None) -> Iterator[dict[str, Any]]:
        """The destination's rows, only `columns` where the store can read fewer."""

    def read_ledger(self, dest: DestinationSpec, columns: Sequence[str], source: SourceSpec,
                    answered: AnsweredIn) -> LedgerRows | None:
        """The ledger read beside the source in one query, where the store can; else None."""

    def destination_columns(self, dest: DestinationSpec) -> frozenset[str] | None:
        """A table's columns (None: the rows' keys tell, or no table yet)."""

    def destination_stamp(self, dest: DestinationSpec) -> Any:
        """The destination's version (a saved plan is stale once it changes)."""

    def collected_jobs(self, dest: DestinationSpec) -> set[str]:
        """The jobs collected into the destination, as of its current version."""

    def forgiven_jobs(self, dest: DestinationSpec) -> set[str]:
        """The failed jobs `batchrun retry` set aside."""

    def write_destination(self, dest: DestinationSpec, rows: Iterable[tuple[dict[str, Any], bool]],
                          collected: Iterable[str], append: bool) -> None:
        """Write the merged rows ((row, changed) pairs) and record `collected`, as one step."""

    def forgive_jobs(self, dest: DestinationSpec, names: Iterable[str]) -> None:
        """Set failed jobs aside, so their failures stop counting."""

    def locations(self, spec: SourceSpec | DestinationSpec) -> Mapping[str, str | None]:
        """Where the spec's data lives, by dataset, for stores that live in a location."""


class StoredRows:
    """The row methods of a Backend, each handed to the store of its spec's kind. A job-service
    backend says which store serves a spec (and refuses the kinds it cannot reach)."""

    def source_store(self, source: SourceSpec) -> Store:
        raise NotImplementedError

    def destination_store(self, dest: DestinationSpec) -> Store:
        raise NotImplementedError

    def before_write(self) -> None:
        """Called before every write to a store (Vertex: the leases held are checked)."""

    # --- reading -------------------------------------------------------------------------------

    def read_source(self, source: SourceSpec, answered: AnsweredIn | None = None) -> Rows:
        return self.source_store(source).read_source(source, answered)

    def source_stamp(self, source: SourceSpec) -> Any:
        return self.source_store(source).source_stamp(source)

    def read_destination(self, dest: DestinationSpec,
                         columns: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
        return self.destination_store(dest).read_destination(dest, columns)

    def read_ledger(self, dest: DestinationSpec, columns: Sequence[str], source: SourceSpec,
                    answered: AnsweredIn) -> LedgerRows | None:
        return self.destination_store(dest).read_ledger(dest, columns, source, answered)

    def destination_columns(self, dest: DestinationSpec) -> frozenset[str] | None:
        return self.destination_store(dest).destination_columns(dest)

    def destination_stamp(self, dest: DestinationSpec) -> Any:
        return self.destination_store(dest).destination_stamp(dest)

    def collected_jobs(self, dest: DestinationSpec) -> set[str]:
        return self.destination_store(dest).collected_jobs(dest)

    def forgiven_jobs(self, dest: DestinationSpec) -> set[str]:
        return self.destination_store(dest).forgiven_jobs(dest)

    # --- writing -------------------------------------------------------------------------------

    def write_destination(self, dest: DestinationSpec, rows: Iterable[tuple[dict[str, Any], bool]],
                          *, collected: Iterable[str], append: bool = False) -> None:
        store = self.destination_store(dest)
        self.before_write()
        store.write_destination(dest, rows, collected, append)

    def forgive_jobs(self, dest: DestinationSpec, names: Iterable[str]) -> None:
        store = self.destination_store(dest)
        self.before_write()
        store.forgive_jobs(dest, names)

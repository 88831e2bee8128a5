"""The Cloud Storage store: JSONL sources (object names with wildcards), and a destination prefix
whose results.jsonl holds the answers, with its collected record under staging. Knows no job
service; the backend checks its leases before each write."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import orjson

from runner.backends.stores import files as localfiles
from runner.backends.stores.gcs import Gcs
from runner.backends.stores.records import CloudRecorded, CloudRecords
from runner.rows import files as rowfile
from runner.rows.records import AnsweredIn, LedgerRows, RowIssue, SourceRow, Unchanged
from runner.spec import DestinationSpec, SourceSpec

log = logging.getLogger(__name__)

RESULTS = "results.jsonl"  # the object under a destination prefix


class GcsStore(CloudRecorded):
    def __init__(self, gcs: Gcs, records: CloudRecords) -> None:
        self.gcs = gcs
        self.records = records

    def read_source(self, source: SourceSpec, answered: AnsweredIn | None
                    ) -> Iterator[SourceRow | RowIssue | Unchanged]:
        del answered  # read whole: nothing is pushed down
        number = 0
        for pattern in source.uris:
            for uri in self.gcs.expand(pattern):
                for line in self.gcs.lines(uri):
                    number += 1
                    yield rowfile.parse_jsonl_line(number, line, f"({uri}) ")

    def source_stamp(self, source: SourceSpec) -> Any:
        return [[uri, self.gcs.generation(uri)] for pattern in source.uris
                for uri in self.gcs.expand(pattern)]

    def read_destination(self, dest: DestinationSpec,
                         columns: Sequence[str] | None) -> Iterator[dict[str, Any]]:
        del columns  # a line is read whole
        log.debug("read destination %s", dest.location)
        uri = dest.location + RESULTS
        if not self.gcs.exists(uri):
            return iter(())
        return localfiles.guard_foreign(dest, (orjson.loads(line) for line in self.gcs.lines(uri)))

    def read_ledger(self, dest: DestinationSpec, columns: Sequence[str], source: SourceSpec,
                    answered: AnsweredIn) -> LedgerRows | None:
        return None  # the whole ledger is read; rows are told by fingerprint

    def destination_columns(self, dest: DestinationSpec) -> frozenset[str] | None:
        return None  # each row's keys tell

    def destination_stamp(self, dest: DestinationSpec) -> Any:
        return self._version(dest)

    def _version(self, dest: DestinationSpec) -> int | None:
        return self.gcs.generation(dest.location + RESULTS)

    def write_destination(self, dest: DestinationSpec, rows: Iterable[tuple[dict[str, Any], bool]],
                          collected: Iterable[str], append: bool) -> None:
        if append:  # an object is replaced whole: the rows already there, then the new ones
            rows = itertools.chain(((row, False) for row in self.read_destination(dest, None)),
                                   rows)
        self.gcs.upload_lines(dest.location + RESULTS, (orjson.dumps(row) for row, _ in rows))
        self.records.written(dest, collected, self._version)

    def locations(self, spec: SourceSpec | DestinationSpec) -> Mapping[str, str | None]:
        return {}  # a bucket's region is not checked against the job's

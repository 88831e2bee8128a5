"""One manifest's row pass counted for its plan: rows per class, the shards of the rows to do and
which of them fit the free job slots, what they would cost, the source's digest, the failures
shown — and, when apply is to follow, the rows to send and to reshape kept in a Prepared as they
are rendered now. Reads nothing itself; decides no change.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from runner import estimate
from runner.backends.base import BackendReader
from runner.ledger.rowpass import Ledger, index_entry, row_key
from runner.ledger.rules import LedgerState, RowClass
from runner.planning.plan import RowCounts
from runner.planning.prepared import Prepared
from runner.planning.shards import Sharder
from runner.rendering.row import RenderedRow
from runner.spec import Manifest, Settings

MAX_FAILURES_SHOWN = 10


@dataclass
class RowTally:
    manifest: Manifest
    ledger: Ledger
    slots: int  # the job slots this manifest may fill now
    tally: estimate.Tally
    sharder: Sharder
    reader: BackendReader  # asked for exact token counts, when they are wanted
    exact_tokens: bool = False
    prepared: Prepared | None = None  # kept for apply, when apply follows
    counts: dict[RowClass, int] = field(default_factory=lambda: dict.fromkeys(RowClass, 0))
    failures: list[tuple[str, str]] = field(default_factory=list)
    shards: list[int] = field(default_factory=list)  # rows per shard of the rows to do
    kept: int = 0  # done rows whose answer is kept from an older spec (on_change: forward)
    refreshed: int = 0  # rows to reshape only for their passthrough columns
    fingerprints: int = 0  # answers whose stored fingerprint apply refreshes (RenderedRow.refresh)
    rerun: int = 0  # rows to do answered under an older spec: the spec changed, they are not new
    # the rows this apply may send (apply checks it sends exactly these), and the source's rows
    send: Any = field(default_factory=hashlib.sha256)
    source: Any = field(default_factory=hashlib.sha256)

    @classmethod
    def start(cls, manifest: Manifest, ledger: Ledger, settings: Settings, slots: int,
              reader: BackendReader, exact_tokens: bool, prepared: Prepared | None) -> RowTally:
        return cls(manifest, ledger, slots,
                   estimate.Tally(estimate.price_for(manifest.model, settings.pricing)),
                   Sharder(settings, manifest.family), reader, exact_tokens, prepared)

    def add(self, row: RenderedRow, kind: RowClass, stored: LedgerState) -> None:
        manifest, ledger = self.manifest, self.ledger
        self.source.update(f"{row.custom_id}\0{row.request_hash or row.source_fp}\n".encode())
        self.counts[kind] += 1
        self.kept += row.skipped and (row.matched_fp or row.source_fp) not in ledger.answered_fps
        if row.refresh:
            self.fingerprints += 1
            if self.prepared is not None:
                # Only the answer the plan saw: the request it was known by, or the older
                # fingerprint (a collect in between may have written another answer)
                self.prepared.refresh[row.custom_id] = (row.source_fp, row.request_hash,
                                                        row.matched_fp)
        if kind is RowClass.TO_DO:
            self.rerun += hash(row.custom_id) in ledger.older_ids
            if self.sharder.add(len(row.line) + 1):
                self.shards.append(0)
            self.shards[-1] += 1
            if len(self.shards) <= self.slots:
                self.send.update(row.request_hash.encode())
                if self.prepared is not None:
                    self.prepared.add(row.line, index_entry(manifest, row))
            exact = (self.reader.count_tokens(manifest.family, manifest.model.resource,
                                              orjson.loads(row.line))
                     if self.exact_tokens else None)
            self.tally.add(exact if exact is not None else estimate.approx_tokens(row.prompt_chars))
        elif kind is RowClass.RESHAPE:
            key = row_key(row.custom_id, row.request_hash)
            self.refreshed += key in ledger.refresh
            if self.prepared is not None:  # the source's passthrough values: a reshape refreshes
                self.prepared.reshape[key] = {k: row.row.data.get(k) for k in manifest.passthrough}
        elif kind is RowClass.FAILED and len(self.failures) < MAX_FAILURES_SHOWN:
            self.failures.append((row.custom_id, stored.last_error or "failed"))

    def finish(self) -> None:
        """The rows left in BigQuery, answered and never read here, count as done."""
        self.counts[RowClass.DONE] += self.ledger.unchanged
        self.source.update(f"unchanged {self.ledger.unchanged}\n".encode())

    @property
    def now_shards(self) -> list[int]:
        return self.shards[:self.slots]

    def rows(self, blocked: bool) -> RowCounts:
        counts = self.counts
        return RowCounts(
            total=sum(counts.values()), done=counts[RowClass.DONE],
            in_flight=counts[RowClass.IN_FLIGHT], to_do=counts[RowClass.TO_DO],
            failed=counts[RowClass.FAILED], reshape=counts[RowClass.RESHAPE], kept=self.kept,
            waiting=0 if blocked else sum(self.shards[self.slots:]))

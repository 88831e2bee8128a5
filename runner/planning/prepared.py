"""What a plan decided to send, kept from the planner's row pass for apply: the rendered request
lines of the rows to send (spooled to a temp file), their digest, the ids the destination held and
the jobs and sources the plan saw. Apply stages from it, so each row is rendered once per command
and what is sent is exactly what was shown. Orchestration data; writes nothing remote.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

import orjson

from runner.backends.base import IndexEntry

if TYPE_CHECKING:
    from runner.answers.spool import ResultSpool
    from runner.rows.idfilter import IdFilter


@dataclass
class Prepared:
    """One manifest's rows to send under its plan, and what the plan saw while choosing them."""

    manifest: str
    jobs_seen: frozenset[str] = frozenset()  # the manifest's jobs when the plan was made
    destination_stamp: Any = None  # the destination's version then (before its ledger was read)
    source_stamp: Any = None  # the source's version then (None: cannot be told)
    ids: IdFilter | None = None  # the destination's ids, when the plan had jobs to collect
    rows: int = 0
    # the result rows of the jobs the row pass read, for collect: each output parsed once
    results: ResultSpool | None = None
    # ledger.row_key of the rows to reshape -> the source row's passthrough values now
    reshape: dict[int, dict[str, Any]] = field(default_factory=dict)
    # custom_id -> the source row's fingerprint now, for the answer stored under another: the one
    # of this request hash, or (an older batchrun's) of that older fingerprint ("": not known)
    refresh: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    _spool: IO[bytes] | None = None
    _digest: Any = field(default_factory=hashlib.sha256)

    def add(self, line: bytes, entry: IndexEntry) -> None:
        if self._spool is None:
            self._spool = tempfile.TemporaryFile()  # noqa: SIM115 - closed by Work.close
        self._spool.write(orjson.dumps([line.decode(), entry.custom_id, entry.request_hash,
                                        dict(entry.passthrough), entry.input_chars,
                                        entry.source_fp]) + b"\n")
        self._digest.update(entry.request_hash.encode())
        self.rows += 1

    @property
    def digest(self) -> str:
        """Of the request hashes to send, as the plan's CREATE change records it."""
        return str(self._digest.hexdigest())[:32]

    def entries(self) -> Iterator[tuple[bytes, IndexEntry]]:
        """The spooled rows in plan order, as the request line and its index entry."""
        if self._spool is None:
            return
        self._spool.seek(0)
        for raw in self._spool:
            line, custom_id, request_hash, passthrough, chars, fp = orjson.loads(raw)
            yield line.encode(), IndexEntry(custom_id, request_hash, passthrough, chars, fp)

    def close(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        if self.results is not None:
            self.results.close()


@dataclass
class Work:
    """The prepared rows of every manifest of one plan; close() drops the spools."""

    manifests: dict[str, Prepared] = field(default_factory=dict)

    def get(self, name: str) -> Prepared | None:
        return self.manifests.get(name)

    def close(self) -> None:
        for prepared in self.manifests.values():
            prepared.close()
        self.manifests.clear()

    def __enter__(self) -> Work:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

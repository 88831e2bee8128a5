"""The record beside a Cloud Storage or BigQuery destination (an object under staging/_collected/,
shared by every project writing that destination): the jobs collected into it, with the
destination's version then — a destination changed behind batchrun's back is collected again,
never paid again — and the failed jobs `batchrun retry` set aside. Knows nothing of plans; the
store of the destination's kind says what its version is."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Any

from runner.backends.stores.gcs import Gcs
from runner.spec import DestinationSpec

Version = Callable[[DestinationSpec], Any]


class CloudRecorded:
    """The record methods of a store whose destination keeps its record under staging: the store
    says what the destination's version is (`_version`)."""

    records: CloudRecords

    def _version(self, dest: DestinationSpec) -> Any:
        raise NotImplementedError

    def collected_jobs(self, dest: DestinationSpec) -> set[str]:
        return self.records.collected(dest, self._version)

    def forgiven_jobs(self, dest: DestinationSpec) -> set[str]:
        return self.records.forgiven(dest)

    def forgive_jobs(self, dest: DestinationSpec, names: Iterable[str]) -> None:
        self.records.forgive(dest, names, self._version)


class CloudRecords:
    def __init__(self, gcs: Callable[[], Gcs], staging: str) -> None:
        self._gcs = gcs  # made when a record is first read: reading a BigQuery source needs none
        self.staging = staging

    @property
    def gcs(self) -> Gcs:
        return self._gcs()

    def _uri(self, dest: DestinationSpec) -> str:
        key = hashlib.sha256(f"{dest.kind}:{dest.location}".encode()).hexdigest()[:24]
        return f"{self.staging}/_collected/{key}.json"

    def collected(self, dest: DestinationSpec, version: Version) -> set[str]:
        data = self.gcs.read_json(self._uri(dest))
        if not data or data.get("stamp") != version(dest):
            return set()  # the destination changed behind our back: re-collect, never re-pay
        return set(data.get("jobs", ()))

    def forgiven(self, dest: DestinationSpec) -> set[str]:
        data = self.gcs.read_json(self._uri(dest))
        return set((data or {}).get("forgiven", ()))

    def forgive(self, dest: DestinationSpec, names: Iterable[str], version: Version) -> None:
        uri = self._uri(dest)
        data = self.gcs.read_json(uri) or {"stamp": version(dest), "jobs": []}
        data["forgiven"] = sorted(set(data.get("forgiven", ())) | set(names))
        self.gcs.write_json(uri, data)

    def written(self, dest: DestinationSpec, jobs: Iterable[str], version: Version) -> None:
        """After the destination was written: the jobs now collected into it, at its new
        version."""
        self.gcs.write_json(self._uri(dest), {"stamp": version(dest), "jobs": sorted(set(jobs)),
                                              "forgiven": sorted(self.forgiven(dest))})

"""Vertex REST client and Cloud Storage lock without servers: a fake HTTP session and a fake bucket
that honours generation preconditions (gcp-storage-emulator ignores them)."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson
import pytest
from google.api_core.exceptions import NotFound, PreconditionFailed

from runner.backends.stores.gcs import Gcs
from runner.backends.vertex.lease import GcsLock, LeaseTimes
from runner.backends.vertex.rest import (
    QuotaExceeded,
    RetryPolicy,
    TransientCreateError,
    VertexClient,
    VertexError,
    host_for,
)
from runner.errors import LockError


@dataclass
class Resp:
    status_code: int
    body: Any

    @property
    def content(self) -> bytes:
        return b"x"

    @property
    def text(self) -> str:
        return str(self.body)

    def json(self) -> Any:
        if isinstance(self.body, Exception):
            raise self.body
        return self.body


@dataclass
class Session:
    answers: list[Any]
    calls: list[tuple[str, str, Any]] = field(default_factory=list)

    def request(self, method: str, url: str, *, json: Any, params: Any, timeout: float) -> Resp:
        self.calls.append((method, url, params))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]


def client(*answers: Any) -> tuple[VertexClient, Session]:
    session = Session(list(answers))
    return VertexClient(project="p", region="us-east5", session=session,
                        retry=RetryPolicy(attempts=4, base=0), sleep=lambda s: None), session


def err(code: int, status: str, message: str = "m") -> Resp:
    return Resp(code, {"error": {"code": code, "message": message, "status": status}})


def test_regional_host_and_paging() -> None:
    assert host_for("us-east5") == "https://us-east5-aiplatform.googleapis.com"
    c, session = client(Resp(200, {"batchPredictionJobs": [{"name": "a"}], "nextPageToken": "t"}),
                        Resp(200, {"batchPredictionJobs": [{"name": "b"}]}), )
    assert [j["name"] for j in c.list('labels.batchrun-managed="v1"')] == ["a", "b"]
    assert session.calls[1][2]["pageToken"] == "t"
    assert session.calls[0][1].endswith("/v1/projects/p/locations/us-east5/batchPredictionJobs")


def test_reads_retry_429_5xx_dropped_connections_and_bad_json() -> None:
    import requests

    c, session = client(err(429, "RESOURCE_EXHAUSTED"), err(503, "UNAVAILABLE"),
                        requests.ConnectionError("reset"), Resp(200, {"name": "n"}))
    assert c.get("n") == {"name": "n"}
    assert len(session.calls) == 4
    c, _ = client(*[err(500, "INTERNAL")] * 4)
    with pytest.raises(VertexError, match="gave up after 4 tries"):
        c.get("n")
    c, _ = client(Resp(200, ValueError("no json")), Resp(200, {"ok": 1}))
    assert c.get("n") == {"ok": 1}


def test_create_is_never_retried_blindly() -> None:
    c, session = client(err(500, "INTERNAL", "Internal error encountered."))
    with pytest.raises(TransientCreateError):
        c.create({})
    assert len(session.calls) == 1
    c, _ = client(err(429, "RESOURCE_EXHAUSTED", "Quota exceeded"))
    with pytest.raises(QuotaExceeded, match="429 RESOURCE_EXHAUSTED: Quota exceeded"):
        c.create({})
    c, _ = client(err(400, "INVALID_ARGUMENT", "Do not support publisher model x"))
    with pytest.raises(VertexError, match="400 INVALID_ARGUMENT: Do not support publisher model x"):
        c.create({})


class FakeBlob:
    def __init__(self, bucket: FakeBucket, name: str) -> None:
        self.bucket, self.name = bucket, name

    @property
    def generation(self) -> int | None:
        entry = self.bucket.objects.get(self.name)
        return entry[1] if entry else None

    def exists(self) -> bool:
        return self.name in self.bucket.objects

    def upload_from_string(self, data: bytes, if_generation_match: int | None = None, **_: Any) -> None:
        with self.bucket.lock:  # the service checks the precondition and writes atomically
            current = self.generation or 0
            if if_generation_match is not None and if_generation_match != current:
                raise PreconditionFailed("generation mismatch")
            self.bucket.counter += 1
            self.bucket.objects[self.name] = (data, self.bucket.counter)

    def download_as_bytes(self) -> bytes:
        return self.bucket.objects[self.name][0]

    def delete(self, if_generation_match: int | None = None) -> None:
        with self.bucket.lock:
            if self.name not in self.bucket.objects:
                raise NotFound("gone")
            if if_generation_match is not None and if_generation_match != self.generation:
                raise PreconditionFailed("generation mismatch")
            del self.bucket.objects[self.name]


class FakeBucket:
    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, int]] = {}
        self.counter = 0
        self.lock = threading.RLock()

    def blob(self, name: str) -> FakeBlob:
        return FakeBlob(self, name)

    def get_blob(self, name: str) -> FakeBlob | None:
        return FakeBlob(self, name) if name in self.objects else None


class FakeStorage:
    def __init__(self) -> None:
        self.buckets: dict[str, FakeBucket] = {}

    def bucket(self, name: str) -> FakeBucket:
        return self.buckets.setdefault(name, FakeBucket())


SHORT = LeaseTimes(ttl=timedelta(seconds=0.5), renew_every=timedelta(seconds=0.1))
STALLED = LeaseTimes(ttl=timedelta(seconds=0.5), renew_every=timedelta(hours=1))  # renews too late


def _take(lock: GcsLock, name: str = "m", timeout: float = 30) -> None:
    """Acquire, trying again while the lease looks live (a challenger waits for it to run out)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            lock.acquire(name)
            return
        except LockError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_gcs_lock_one_owner_no_takeover_by_pid_an_expired_lease_taken_over() -> None:
    gcs = Gcs(FakeStorage())
    uri = "gs://b/staging/_locks/m.json"
    objects = gcs.client.bucket("b").objects
    first = GcsLock(gcs, uri)
    first.acquire("m")
    with pytest.raises(LockError, match=f"being applied by pid {os.getpid()}"):
        GcsLock(gcs, uri).acquire("m")
    with pytest.raises(LockError, match=r"whose lease runs until .*refusing to unlock"):
        GcsLock(gcs, uri).force("m")
    # Its record names a pid that does not exist here (another PID namespace, one hostname): the
    # lease is what counts, and it is live.
    data = orjson.loads(objects["staging/_locks/m.json"][0])
    data["pid"] = 2**22 + 12345
    with gcs.client.bucket("b").lock:
        gcs.client.bucket("b").counter += 1
        objects["staging/_locks/m.json"] = (orjson.dumps(data), gcs.client.bucket("b").counter)
    with pytest.raises(LockError, match=f"being applied by pid {2**22 + 12345}"):
        GcsLock(gcs, uri).acquire("m")
    first.check()  # its own token is there: still its lease
    first.release()
    assert "staging/_locks/m.json" not in objects
    # A holder that stopped renewing: once its lease ran out, and its generation stood still for a
    # whole lease, it is taken over; it then refuses to write, and its release frees nothing.
    stalled = GcsLock(gcs, uri, times=STALLED)
    stalled.acquire("m")
    thief = GcsLock(gcs, uri, times=SHORT)
    _take(thief)
    assert thief.generation != stalled.generation
    with pytest.raises(LockError, match=r"lost the lock of m to another apply .*now held by pid"):
        stalled.check()
    stalled.release()
    assert objects["staging/_locks/m.json"][1] == thief.generation
    thief.check()
    thief.release()
    assert "staging/_locks/m.json" not in objects


def test_gcs_lock_a_renewal_that_landed_unanswered_is_still_ours() -> None:
    """The client retries a conditional write whose answer was lost; the retry meets our own new
    generation and fails its precondition: the token says the lease is still ours."""
    gcs = Gcs(FakeStorage())
    uri = "gs://b/staging/_locks/m.json"
    lock = GcsLock(gcs, uri, times=STALLED)
    lock.acquire("m")
    mine = lock.generation
    with gcs.client.bucket("b").lock:  # our renewal landed, its answer never came
        gcs.client.bucket("b").counter += 1
        data = gcs.client.bucket("b").objects["staging/_locks/m.json"][0]
        gcs.client.bucket("b").objects["staging/_locks/m.json"] = (data, gcs.client.bucket("b").counter)
    time.sleep(0.3)  # past half a lease: the next write renews first
    lock.check()
    assert lock.generation != mine
    lock.release()
    assert not gcs.client.bucket("b").objects


def test_gcs_unlock_removes_only_a_lease_that_ran_out() -> None:
    gcs = Gcs(FakeStorage())
    uri = "gs://b/staging/_locks/m.json"
    stalled = GcsLock(gcs, uri, times=STALLED)
    stalled.acquire("m")
    with pytest.raises(LockError, match="refusing to unlock"):
        GcsLock(gcs, uri, times=SHORT).force("m")
    time.sleep(STALLED.ttl.total_seconds())  # its lease runs out
    # Removed once it ran out and stood still for a whole lease.
    assert GcsLock(gcs, uri, times=SHORT).force("m") == "removed the expired lock of m"
    assert not gcs.client.bucket("b").objects
    with pytest.raises(LockError, match="lost the lock of m to another apply"):
        stalled.check()
    stalled.release()
    assert GcsLock(gcs, uri).force("m") == "m was not locked"


def test_the_stores_make_only_the_google_clients_they_need(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Found by review of the stores: the BigQuery store's collected record made a Cloud Storage
    client at once, so `batchrun render` of a BigQuery source made one it never used."""
    from runner.backends.vertex.backend import VertexBackend
    from runner.spec import DestinationKind, DestinationSpec, Settings, SourceKind, SourceSpec

    monkeypatch.setenv("BATCHRUN_BIGQUERY_ENDPOINT", "http://127.0.0.1:9")  # never called
    backend = VertexBackend(Settings(root=tmp_path, config_file=None, backend="vertex",
                                     project="p", region="us-east5", staging="gs://b/s"))
    backend.source_store(SourceSpec(SourceKind.FILE, "rows.jsonl", "jsonl", "id"))
    backend.destination_store(DestinationSpec(DestinationKind.FILE, "out.jsonl", "out.jsonl"))
    assert (backend._gcs, backend._bq) == (None, None)
    backend.source_store(SourceSpec(SourceKind.BIGQUERY, "p.d.t", "bigquery", "id"))
    assert backend._gcs is None and backend._bq is not None

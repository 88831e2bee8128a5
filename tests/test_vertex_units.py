"""Vertex REST client and Cloud Storage lock without servers: a fake HTTP session and a fake bucket
that honours generation preconditions (gcp-storage-emulator ignores them)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest
from google.api_core.exceptions import NotFound, PreconditionFailed

from runner.backends.vertex.gcs import Gcs, GcsLock
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


def test_gcs_lock_one_owner_takeover_and_force() -> None:
    gcs = Gcs(FakeStorage())
    uri = "gs://b/staging/_locks/m.json"
    first = GcsLock(gcs, uri)
    first.acquire("m")
    with pytest.raises(LockError, match=f"being applied by pid {os.getpid()}"):
        GcsLock(gcs, uri).acquire("m")
    with pytest.raises(LockError, match="still running; refusing to unlock"):
        GcsLock(gcs, uri).force("m")
    first.release()
    second = GcsLock(gcs, uri)
    second.acquire("m")
    # A dead owner on this host: rewrite the owner record with a pid that cannot exist.
    blob = gcs.blob(uri)
    data = __import__("orjson").loads(blob.download_as_bytes())
    data["pid"] = 2**22 + 12345
    gcs.client.bucket("b").objects["staging/_locks/m.json"] = (
        __import__("orjson").dumps(data), blob.generation)
    third = GcsLock(gcs, uri)
    third.acquire("m")  # taken over safely
    assert third.generation is not None and third.generation != second.generation
    second.release()  # the old owner's release must not free the new owner's lock
    assert gcs.blob(uri).exists()

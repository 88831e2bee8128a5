"""Cloud Storage for the vertex backend: content-addressed staging, reading sources and job outputs,
a JSONL destination under a prefix. The lock object is lease.py's."""

from __future__ import annotations

import contextlib
import fnmatch
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson


def split(uri: str) -> tuple[str, str]:
    bucket, _, path = uri.removeprefix("gs://").partition("/")
    return bucket, path


def make_client() -> Any:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage  # type: ignore[attr-defined]

    host = os.environ.get("STORAGE_EMULATOR_HOST")
    if host:  # the emulator takes no credentials; never send real ones to it
        return storage.Client(project="batchrun", credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": host})
    return storage.Client()


class Gcs:
    def __init__(self, client: Any = None) -> None:
        self.client = client if client is not None else make_client()

    def blob(self, uri: str) -> Any:
        bucket, path = split(uri)
        return self.client.bucket(bucket).blob(path)

    def exists(self, uri: str) -> bool:
        return bool(self.blob(uri).exists())

    def expand(self, uri: str) -> list[str]:
        """A URI with * or ? -> the matching objects, sorted; others stay as they are."""
        bucket, path = split(uri)
        if not any(c in path for c in "*?["):
            return [uri]
        prefix = path.split("*", 1)[0].split("?", 1)[0].split("[", 1)[0]
        return sorted(f"gs://{bucket}/{b.name}" for b in self.client.list_blobs(bucket, prefix=prefix)
                      if fnmatch.fnmatchcase(b.name, path))

    def list_all(self, folder: str) -> list[str]:
        """Every object under a folder prefix."""
        bucket, path = split(folder.rstrip("/") + "/")
        return sorted(f"gs://{bucket}/{b.name}" for b in self.client.list_blobs(bucket, prefix=path))

    def delete(self, uri: str) -> None:
        from google.api_core.exceptions import NotFound

        with contextlib.suppress(NotFound):  # gone already: what gc wanted
            self.blob(uri).delete()

    def list_jsonl(self, folder: str) -> list[str]:
        bucket, path = split(folder.rstrip("/") + "/")
        return sorted(f"gs://{bucket}/{b.name}" for b in self.client.list_blobs(bucket, prefix=path)
                      if b.name.endswith(".jsonl"))

    def lines(self, uri: str) -> Iterator[bytes]:
        """Stream an object's lines without holding it whole."""
        with self.blob(uri).open("rb") as fh:
            for line in fh:
                if line.strip():
                    yield line.rstrip(b"\r\n")

    def upload_file(self, uri: str, path: Path, *, if_absent: bool = False) -> None:
        blob = self.blob(uri)
        if if_absent and blob.exists():
            return  # content-addressed: the same name holds the same bytes
        blob.upload_from_filename(str(path), content_type="application/jsonl")

    def upload_lines(self, uri: str, lines: Iterable[bytes]) -> int | None:
        """Write a whole object from a stream (spooled to a temp file, one atomic upload)."""
        with tempfile.NamedTemporaryFile("wb", suffix=".jsonl", delete=False) as fh:
            for line in lines:
                fh.write(line + b"\n")
        try:
            blob = self.blob(uri)
            blob.upload_from_filename(fh.name, content_type="application/jsonl")
            return int(blob.generation) if blob.generation is not None else None
        finally:
            Path(fh.name).unlink(missing_ok=True)

    def read_json(self, uri: str) -> Any:
        blob = self.blob(uri)
        if not blob.exists():
            return None
        try:
            return orjson.loads(blob.download_as_bytes())
        except orjson.JSONDecodeError:  # a damaged record of ours: as if absent (re-collect)
            return None

    def write_json(self, uri: str, value: Any) -> None:
        self.blob(uri).upload_from_string(orjson.dumps(value), content_type="application/json")

    def generation(self, uri: str) -> int | None:
        blob = self.client.bucket(split(uri)[0]).get_blob(split(uri)[1])
        return None if blob is None else int(blob.generation or 0)

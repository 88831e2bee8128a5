"""Helpers for the tests that run the vertex backend against the emulators: a fresh bucket, dataset
and fake-Vertex state per test, and the real Google clients pointed at them."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import requests
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery, storage

from runner import api
from tests.conftest import ProjectDir

PROJECT = "batchrun-test"
RETRY = bigquery.DEFAULT_RETRY.with_deadline(10)


class VertexWorld:
    def __init__(self, env: dict[str, str], project_dir: ProjectDir) -> None:
        self.env = env
        self.p = project_dir
        self.vertex = env["BATCHRUN_VERTEX_ENDPOINT"]
        self.suffix = secrets.token_hex(3)
        self.bucket = f"bucket-{self.suffix}"
        self.dataset = f"ds_{self.suffix}"
        self.gcs = storage.Client(project=PROJECT, credentials=AnonymousCredentials(),
                                  client_options={"api_endpoint": env["STORAGE_EMULATOR_HOST"]})
        self.bq = bigquery.Client(project=PROJECT, credentials=AnonymousCredentials(),
                                  client_options={"api_endpoint": env["BATCHRUN_BIGQUERY_ENDPOINT"]})
        self.gcs.create_bucket(self.bucket)
        dataset = bigquery.Dataset(f"{PROJECT}.{self.dataset}")
        dataset.location = "us-east5"  # where the project's jobs run: Vertex needs them together
        self.bq.create_dataset(dataset, retry=RETRY)
        requests.post(f"{self.vertex}/_fake/reset", timeout=10).raise_for_status()
        (project_dir.root / "triage.yaml").unlink()  # each test writes its own manifests
        project_dir.write("batchrun.yaml", f"""\
            backend: vertex
            project: {PROJECT}
            region: us-east5
            staging: gs://{self.bucket}/staging
            quota: {{internal_retry_delay: 1}}
            """)

    def faults(self, **faults: Any) -> None:
        requests.post(f"{self.vertex}/_fake/faults", json=faults, timeout=10).raise_for_status()

    def sent(self) -> list[dict[str, str]]:
        out: list[dict[str, str]] = requests.get(f"{self.vertex}/_fake/sent", timeout=10).json()
        return out

    def sent_ids(self) -> list[str]:
        return sorted(s["custom_id"] for s in self.sent())

    def fake_jobs(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = requests.get(f"{self.vertex}/_fake/jobs", timeout=10).json()
        return out

    def table(self, name: str) -> str:
        return f"{PROJECT}.{self.dataset}.{name}"

    def load_table(self, name: str, rows: list[dict[str, Any]], schema: list[tuple[str, str]]) -> None:
        fields = [bigquery.SchemaField(n, t) for n, t in schema]
        config = bigquery.LoadJobConfig(schema=fields, source_format="NEWLINE_DELIMITED_JSON",
                                        write_disposition="WRITE_APPEND")
        self.bq.load_table_from_json(rows, self.table(name), job_config=config).result(timeout=60)

    def rows(self, name: str) -> dict[str, dict[str, Any]]:
        return {r["custom_id"]: dict(r) for r in self.bq.list_rows(self.table(name), retry=RETRY)}

    def upload(self, path: str, text: str) -> None:
        self.gcs.bucket(self.bucket).blob(path).upload_from_string(text)

    def download(self, path: str) -> str:
        return str(self.gcs.bucket(self.bucket).blob(path).download_as_text())

    def download_prefix(self, uri: str) -> list[str]:
        """The lines of every object under a gs:// folder."""
        bucket, _, prefix = uri.removeprefix("gs://").partition("/")
        return [line for blob in self.gcs.list_blobs(bucket, prefix=prefix.rstrip("/") + "/")
                for line in blob.download_as_text().splitlines() if line.strip()]

    def bq_rows(self, uri: str) -> list[dict[str, Any]]:
        import json

        rows = [dict(r) for r in self.bq.list_rows(uri.removeprefix("bq://"), retry=RETRY)]
        return [{k: json.loads(v) if k in ("request", "response") and isinstance(v, str) else v
                 for k, v in r.items()} for r in rows]

    def project(self) -> api.Project:
        return api.load_project(cwd=self.p.root)

    def converge(self, timeout: float = 90) -> api.Plan:
        return api.converge(self.project(), poll_interval=0.2, timeout=timeout)

    def settle(self, timeout: float = 60) -> api.Plan:
        """Wait until no job is in flight; apply nothing."""
        deadline = time.monotonic() + timeout
        while True:
            plan = api.plan(self.project())
            if not any(m.rows.in_flight for m in plan.manifests):
                return plan
            assert time.monotonic() < deadline, "jobs never finished"
            time.sleep(0.2)


def world(env: dict[str, str], project_dir: ProjectDir) -> Iterator[VertexWorld]:
    yield VertexWorld(env, project_dir)

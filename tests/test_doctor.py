"""Issue 14: `batchrun doctor [--canary]` against the fake Vertex server and the emulators — all
green when all is in place, and each ✗ (missing bucket, dataset in another region, no credentials)
a golden line with its fix; the canary saves raw output lines and reads them back."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from runner import api, display
from tests.vertex_env import VertexWorld

ROWS = '{"id": "a1", "text": "hello"}\n{"id": "a2", "text": "world"}\n'


def manifests(vertex: VertexWorld, dataset: str | None = None) -> None:
    vertex.p.write("rows.jsonl", ROWS)
    vertex.p.write("chat.yaml", """\
        apiVersion: batchrun/v1
        kind: BatchJob
        metadata: {name: chat}
        spec:
          model: anthropic/claude-haiku-4-5@20251001
          parameters: {max_tokens: 10}
          source: {file: rows.jsonl, id: id}
          prompt: {user: "{{ text }}"}
          destination: {bigquery: {table: TABLE}}
        """.replace("TABLE", dataset or vertex.table("chat_out")))
    vertex.p.write("embed.yaml", """\
        apiVersion: batchrun/v1
        kind: BatchJob
        metadata: {name: embed}
        spec:
          model: intfloat/multilingual-e5-small-maas
          region: us-central1
          source: {file: rows.jsonl, id: id}
          prompt: {input: "{{ text }}"}
          destination: {file: out/embed.jsonl}
        """)


def text(vertex: VertexWorld, findings: list[object]) -> str:
    """Stable across runs: the random bucket and dataset names, the project id derived from the
    staging location and the id doctor suggests, masked."""
    shown = display.findings_text(findings)  # type: ignore[arg-type]
    shown = shown.replace(vertex.project().settings.project_label, "staging-DIGEST")
    shown = re.sub(r"`id: [a-z0-9-]+-[0-9a-f]{6}`", "`id: FOLDER-RANDOM`", shown)
    return shown.replace(vertex.suffix, "XXXXXX").replace(vertex.vertex, "http://EMULATOR")


def test_doctor_is_all_green_when_all_is_in_place(vertex: VertexWorld,
                                                   golden: Callable[[str, str], None]) -> None:
    manifests(vertex)
    findings = api.doctor(vertex.project())
    shown = text(vertex, findings)
    assert all(f.ok for f in findings), shown
    golden("doctor/green.txt", shown)


def test_doctor_names_a_missing_bucket_and_a_dataset_in_another_region(
        vertex: VertexWorld, golden: Callable[[str, str], None], run) -> None:  # type: ignore[no-untyped-def]
    from google.cloud import bigquery

    dataset = f"{vertex.table('x').split('.')[0]}.{vertex.dataset}_us"
    elsewhere = bigquery.Dataset(dataset)
    elsewhere.location = "US"
    vertex.bq.create_dataset(elsewhere)
    manifests(vertex, dataset=f"{dataset}.chat_out")
    settings = vertex.p.root / "batchrun.yaml"
    settings.write_text(settings.read_text().replace(f"gs://{vertex.bucket}/", "gs://no-such-bucket/"))
    findings = api.doctor(vertex.project())
    shown = text(vertex, findings)
    assert "✗ staging bucket gs://no-such-bucket: does not exist" in shown
    assert f"✗ dataset {dataset.replace(vertex.suffix, 'XXXXXX')}: in US, its jobs run in us-east5" in shown
    golden("doctor/missing-bucket-wrong-region.txt", shown)
    out = run("doctor", code=1)  # as a user runs it: the same lines, exit 1
    assert "✗ staging bucket gs://no-such-bucket: does not exist" in out


def test_doctor_without_credentials_says_how_to_get_them(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, golden: Callable[[str, str], None]) -> None:
    from runner.backends.vertex import doctor

    for key in ("BATCHRUN_VERTEX_ENDPOINT", "GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_CONFIG"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no gcloud login file
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # no metadata server to ask here
    finding = doctor.credentials()
    assert not finding.ok
    golden("doctor/no-credentials.txt", display.findings_text([finding]))


def test_canary_writes_its_raw_output_and_reads_it_back(vertex: VertexWorld) -> None:
    manifests(vertex)
    findings = api.canary(vertex.project(), timeout=60)
    assert len(findings) == 2 and all(f.ok for f in findings), display.findings_text(findings)
    folder = next((vertex.p.root / ".batchrun" / "canary").iterdir())
    saved = sorted(p.name for p in folder.iterdir())
    assert saved == ["claude-bigquery.jsonl", "openai-embeddings-file.jsonl"]
    lines = [json.loads(line) for line in (folder / "claude-bigquery.jsonl").read_text().splitlines()]
    assert sorted(line["custom_id"] for line in lines) == ["canary-ok", "canary-refused"]
    assert vertex.fake_jobs() == []  # the canary jobs and their leftovers are gone
    assert not api.plan(vertex.project()).orphans
    # Nothing of the canary landed in a destination: its rows are no manifest's.
    assert not (vertex.p.root / "out" / "embed.jsonl").exists()
    tables = {t.table_id for t in vertex.bq.list_tables(vertex.dataset)}
    assert not any(t.startswith("batchrun_") for t in tables) and "chat_out" not in tables

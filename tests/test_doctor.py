"""Issue 14: `batchrun doctor [--canary]` against the fake Vertex server and the emulators — all
green when all is in place, and each ✗ (missing bucket, dataset in another region, no credentials)
a golden line with its fix; the canary saves raw output lines and reads them back."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from runner import api
from runner.views import text as display
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


# --- issue 22, item 5: doctor writes nothing unless asked; permissions are asked of the services ---

@pytest.fixture
def proxied(vertex: VertexWorld, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Cloud Storage, BigQuery and Vertex behind recording proxies, for what doctor sends."""
    from tests.recording_proxy import RecordingProxy

    keys = ("STORAGE_EMULATOR_HOST", "BATCHRUN_BIGQUERY_ENDPOINT", "BATCHRUN_VERTEX_ENDPOINT")
    proxies = {key: RecordingProxy(vertex.env[key]) for key in keys}
    for key, proxy in proxies.items():
        monkeypatch.setenv(key, proxy.url)
    yield proxies
    for proxy in proxies.values():
        proxy.stop()


def _objects(vertex: VertexWorld) -> list[tuple[str, int]]:
    return sorted((b.name, int(b.generation)) for b in vertex.gcs.list_blobs(vertex.bucket))


def _chat_out(vertex: VertexWorld) -> None:
    """The destination table, made as apply makes it, so doctor has a table to ask about."""
    from google.cloud import bigquery

    vertex.bq.create_table(bigquery.Table(vertex.table("chat_out"),
                                          schema=[bigquery.SchemaField("custom_id", "STRING")]))


def _masked(vertex: VertexWorld, findings: list[object]) -> str:
    return re.sub(r"http://127\.0\.0\.1:\d+", "http://PROXY", text(vertex, findings))


def test_doctor_without_canary_writes_nothing(vertex: VertexWorld, proxied, run) -> None:  # type: ignore[no-untyped-def]
    manifests(vertex)
    _chat_out(vertex)
    vertex.upload("staging/keep.txt", "a user's object")
    before = _objects(vertex)
    findings = api.doctor(vertex.project())
    out = run("doctor")  # as a user runs it, without --canary
    for proxy in proxied.values():
        assert proxy.writes() == [], proxy.requests
    assert all(f.ok for f in findings), display.findings_text(findings)
    assert "may read, list, create and delete objects there (asked Cloud Storage; nothing written)" in out
    gcs = proxied["STORAGE_EMULATOR_HOST"].requests
    assert any("/iam/testPermissions" in path for _, path in gcs)
    assert any(":testIamPermissions" in path for _, path in proxied["BATCHRUN_BIGQUERY_ENDPOINT"].requests)
    assert _objects(vertex) == before  # same objects, same generations


def test_doctor_canary_is_what_writes_the_probe(vertex: VertexWorld, proxied) -> None:  # type: ignore[no-untyped-def]
    manifests(vertex)
    before = _objects(vertex)
    shown = display.findings_text(api.doctor(vertex.project(), write_probe=True))
    assert f"✓ staging bucket gs://{vertex.bucket}: writable (a test object was written and removed)" in shown
    writes = proxied["STORAGE_EMULATOR_HOST"].writes()
    assert [m for m, _ in writes] == ["POST", "DELETE"], writes
    assert _objects(vertex) == before


def test_a_plan_only_identity_sees_a_cross_only_for_what_it_may_not(
        vertex: VertexWorld, proxied, golden) -> None:  # type: ignore[no-untyped-def]
    manifests(vertex)
    _chat_out(vertex)
    # what plan needs, no more: read the bucket, read and list its objects, read the tables
    proxied["STORAGE_EMULATOR_HOST"].granted = {"storage.buckets.get", "storage.objects.get",
                                                "storage.objects.list"}
    proxied["BATCHRUN_BIGQUERY_ENDPOINT"].granted = {"bigquery.tables.get", "bigquery.tables.getData"}
    findings = api.doctor(vertex.project())
    crosses = [f.what for f in findings if not f.ok]
    assert [c.split(": this identity may not ")[1].split(" (")[0] for c in crosses] == [
        "create or delete objects there", "write it"], crosses
    shown = _masked(vertex, findings)
    assert "✓ staging bucket gs://bucket-XXXXXX: this identity may read and list objects there" in shown
    golden("doctor/plan-only.txt", shown)
    for proxy in proxied.values():
        assert proxy.writes() == []


def test_a_service_that_does_not_answer_is_could_not_check_not_a_cross(
        vertex: VertexWorld, proxied, golden) -> None:  # type: ignore[no-untyped-def]
    manifests(vertex)
    _chat_out(vertex)
    for proxy in proxied.values():
        proxy.iam_answers = False
    findings = api.doctor(vertex.project())
    shown = _masked(vertex, findings)
    assert all(f.ok for f in findings), shown
    said = "could not check; the service did not answer testIamPermissions (HTTP 501, "
    assert f"! staging bucket gs://bucket-XXXXXX: permissions: {said}" in shown
    assert f"! table batchrun-test.ds_XXXXXX.chat_out: permissions: {said}" in shown
    golden("doctor/could-not-check.txt", shown)


def test_an_identity_that_may_not_read_the_bucket_itself_is_told(vertex: VertexWorld, proxied) -> None:  # type: ignore[no-untyped-def]
    """roles/storage.objectViewer alone: objects readable, the bucket's metadata not — and plan
    asks the bucket's metadata whether it is there."""
    manifests(vertex)
    proxied["STORAGE_EMULATOR_HOST"].granted = {"storage.objects.get", "storage.objects.list"}
    proxied["STORAGE_EMULATOR_HOST"].forbidden = {f"/storage/v1/b/{vertex.bucket}"}
    shown = text(vertex, api.doctor(vertex.project()))
    assert ("✗ staging bucket gs://bucket-XXXXXX: this identity may not read the bucket itself "
            "(storage.buckets.get); plan asks with it that the bucket is there") in shown
    assert "may read and list objects there" in shown and "exists (" not in shown
    assert proxied["STORAGE_EMULATOR_HOST"].writes() == []

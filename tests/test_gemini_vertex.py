"""Issue 27: Gemini on Vertex batch through the real Google clients, the emulators and the fake
Vertex server: Cloud Storage and BigQuery in and out, rows back out of order and matched by the id
batchrun sent, a retyped id, a row's `Bad Request`, an import failure of the whole job."""

from __future__ import annotations

import json
from typing import Any

from runner import api
from tests.vertex_env import VertexWorld

QUESTIONS = [{"qid": f"{i:06d}", "question": f"What is {i} + {i}?"} for i in range(1, 6)]


def _gcs_manifest(vertex: VertexWorld, extra: str = "") -> None:
    vertex.p.write("gem.yaml", f"""\
        apiVersion: batchrun/v1
        kind: BatchJob
        metadata: {{name: gem}}
        spec:
          model: google/gemini-3.8-flash
          parameters: {{maxOutputTokens: 64, temperature: 0.2}}
          source:
            gcs: {{uris: ["gs://{vertex.bucket}/questions/*.jsonl"]}}
            id: qid
          prompt:
            system: Answer in one line.
            user: "Answer: {{{{ question }}}}"
          destination:
            gcs: {{prefix: "gs://{vertex.bucket}/answers"}}
        {extra}""")


def _answers(vertex: VertexWorld) -> dict[str, dict[str, Any]]:
    lines = [json.loads(x) for x in vertex.download("answers/results.jsonl").splitlines()]
    return {r["custom_id"]: r for r in lines}


def _sent(vertex: VertexWorld) -> list[str]:
    return sorted(s["custom_id"] for s in vertex.sent())


def test_gcs_jsonl_to_gemini_to_gcs_out_of_order_then_three_new_rows_send_three(
        vertex: VertexWorld) -> None:
    vertex.upload("questions/part-1.jsonl", "".join(json.dumps(q) + "\n" for q in QUESTIONS))
    _gcs_manifest(vertex)
    final = vertex.converge()
    assert final.manifest("gem").rows.done == 5, vertex.download("answers/results.jsonl")[:2000]
    by_id = _answers(vertex)
    # "000001" went out as "br-000001": no importer could read it as the number 1
    assert sorted(by_id) == [q["qid"] for q in QUESTIONS]
    assert by_id["000003"]["output"] == "Answer: What is 3 + 3?"
    assert by_id["000003"]["usage"]["input_tokens"] > 0
    job = vertex.fake_jobs()[0]
    assert job["model"] == "publishers/google/models/gemini-3.8-flash"
    out = [json.loads(x) for x in vertex.download_prefix(job["outputInfo"]["gcsOutputDirectory"])]
    order = [r["custom_id"] for r in out]
    assert order != sorted(order)  # Vertex wrote them out of order; matched by id all the same
    assert all(r["status"] == "" and "response" in r for r in out)
    assert _sent(vertex) == [f"br-{q['qid']}" for q in QUESTIONS]

    before = len(vertex.sent())
    assert not api.plan(vertex.project()).has_changes
    vertex.upload("questions/part-2.jsonl", "".join(
        json.dumps({"qid": f"n{i}", "question": f"New {i}?"}) + "\n" for i in range(3)))
    assert api.plan(vertex.project()).manifest("gem").rows.to_do == 3
    vertex.converge()
    assert len(vertex.sent()) == before + 3
    assert not api.plan(vertex.project()).has_changes


def test_a_bad_request_row_spends_one_attempt_each_send_and_a_retyped_id_is_still_matched(
        vertex: VertexWorld) -> None:
    vertex.upload("questions/part-1.jsonl", "".join(json.dumps(q) + "\n" for q in QUESTIONS))
    vertex.faults(fail_rows=["br-000002"], busy_rows=["br-000004"], coerce_ids=True)
    _gcs_manifest(vertex, "  max_attempts: 2\n")
    vertex.settle()
    for _ in range(2):  # the first job, then the resend of 000002 (000004 was the service's 429)
        api.apply(vertex.project())
        vertex.settle()
    vertex.faults(busy_rows=[])
    final = vertex.converge()
    gem = final.manifest("gem")
    assert (gem.rows.done, gem.rows.failed) == (4, 1)
    failed = _answers(vertex)["000002"]
    assert failed["status"] == "failed" and "echo was told to fail this row" in failed["error"]
    assert failed["attempts"] == 2
    assert _sent(vertex).count("br-000002") == 2  # two attempts, then no more
    assert _answers(vertex)["000004"]["attempts"] == 1  # its 429 spent none
    assert not api.plan(vertex.project()).has_changes


def test_an_import_failure_blocks_the_manifest_naming_the_trigger_and_sends_nothing_twice(
        vertex: VertexWorld, run) -> None:  # type: ignore[no-untyped-def]
    vertex.upload("questions/part-1.jsonl", "".join(json.dumps(q) + "\n" for q in QUESTIONS))
    vertex.faults(import_error="Schema nested too deeply, at least 16 compared to the maximum "
                               "allowed level of 15")
    _gcs_manifest(vertex)
    api.apply(vertex.project())
    vertex.settle()
    shown = run("plan")
    assert "blocked" in shown and "batch importer refused the staged rows" in shown
    assert "Schema nested too deeply" in shown
    run("apply", "--auto-approve")
    assert vertex.sent() == [] and len(vertex.fake_jobs()) == 1  # no second job for the same rows


def test_bigquery_to_gemini_to_bigquery_with_a_json_schema(vertex: VertexWorld) -> None:
    vertex.load_table("reviews", [{"review_id": f"r{i}", "text": f"review {i}"} for i in range(4)],
                      [("review_id", "STRING"), ("text", "STRING")])
    vertex.p.write("gem.yaml", f"""\
        apiVersion: batchrun/v1
        kind: BatchJob
        metadata: {{name: gem}}
        spec:
          model: google/gemini-3.8-flash
          parameters: {{maxOutputTokens: 128}}
          source:
            bigquery: {{table: {vertex.table("reviews")}}}
            id: review_id
          prompt: {{user: "Rate: {{{{ text }}}}"}}
          response:
            format: json
            schema:
              $schema: https://json-schema.org/draft/2020-12/schema
              type: object
              properties: {{stars: {{type: [integer, "null"]}}}}
              required: [stars]
          passthrough: [text]
          destination:
            bigquery: {{table: {vertex.table("rated")}}}
        """)
    final = vertex.converge()
    assert final.manifest("gem").rows.done == 4
    rows = vertex.rows("rated")
    assert sorted(rows) == ["r0", "r1", "r2", "r3"]
    assert json.loads(rows["r1"]["output"]) == {"stars": 0} and rows["r1"]["text"] == "review 1"
    job = vertex.fake_jobs()[0]
    assert job["inputConfig"]["instancesFormat"] == "bigquery"
    staged = vertex.bq_rows(job["inputConfig"]["bigquerySource"]["inputUri"])
    config = staged[0]["request"]["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert "$schema" not in json.dumps(config)  # the importer would fail the job on it
    assert config["responseJsonSchema"]["properties"]["stars"] == {
        "anyOf": [{"type": "integer"}, {"type": "null"}]}
    before = len(vertex.sent())
    vertex.converge()
    assert len(vertex.sent()) == before


def test_the_official_clients_read_the_fake_s_gemini_jobs(vertex: VertexWorld) -> None:
    """google-genai (Vertex mode) and the aiplatform REST client take the fake's Gemini job
    resources: create, get, list, and a finished job's outputInfo and string completionStats."""
    import time

    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform_v1
    from google.genai import Client, types

    vertex.upload("in/g.jsonl", json.dumps({"custom_id": "br-a", "request": {
        "contents": [{"role": "user", "parts": [{"text": "hello"}]}]}}) + "\n")
    from google.oauth2.credentials import Credentials

    genai = Client(vertexai=True, project="p", location="us-central1",
                   credentials=Credentials(token="fake"),  # a token that needs no refresh
                   http_options=types.HttpOptions(base_url=vertex.vertex, api_version="v1"))
    job = genai.batches.create(model="gemini-3.8-flash", src=f"gs://{vertex.bucket}/in/g.jsonl",
                               config=types.CreateBatchJobConfig(
                                   dest=f"gs://{vertex.bucket}/out", display_name="g"))
    assert job.name and job.name.startswith("projects/123456789012/") and job.state
    for _ in range(200):
        job = genai.batches.get(name=job.name)
        if job.state == types.JobState.JOB_STATE_SUCCEEDED:
            break
        time.sleep(0.05)
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED
    assert job.dest and job.dest.gcs_uri == f"gs://{vertex.bucket}/out"  # the SDK's: outputConfig
    assert job.completion_stats and job.completion_stats.successful_count == 1  # from "1"
    assert [j.name for j in genai.batches.list()] == [job.name]
    rest = aiplatform_v1.JobServiceClient(
        transport="rest", credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": vertex.vertex})
    got = rest.get_batch_prediction_job(name=job.name)
    assert got.model == "publishers/google/models/gemini-3.8-flash"
    assert got.completion_stats.successful_count == 1
    assert got.output_info.gcs_output_directory.startswith(f"{job.dest.gcs_uri}/prediction-model-")
    (row,) = map(json.loads, vertex.download_prefix(got.output_info.gcs_output_directory))
    assert row["custom_id"] == "br-a" and row["response"]["candidates"][0]["content"]["parts"]


def test_doctor_canary_covers_the_gemini_family(vertex: VertexWorld) -> None:
    from runner.views import text as display

    vertex.upload("questions/part-1.jsonl", "".join(json.dumps(q) + "\n" for q in QUESTIONS))
    _gcs_manifest(vertex)
    findings = api.canary(vertex.project(), timeout=60)
    assert len(findings) == 1 and findings[0].ok, display.findings_text(findings)
    assert "canary gemini -> gcs" in findings[0].what
    folder = next((vertex.p.root / ".batchrun" / "canary").iterdir())
    lines = [json.loads(x) for x in (folder / "gemini-gcs.jsonl").read_text().splitlines()]
    by_id = {line["custom_id"]: line for line in lines}
    assert sorted(by_id) == ["br-canary-ok", "br-canary-refused"]
    assert by_id["br-canary-refused"]["status"].startswith("Bad Request: ")
    assert vertex.fake_jobs() == [] and vertex.sent_ids() == ["br-canary-ok", "br-canary-refused"]


def test_an_expired_gemini_job_keeps_what_it_answered_and_sends_only_the_rest(
        vertex: VertexWorld) -> None:
    vertex.upload("questions/part-1.jsonl", "".join(json.dumps(q) + "\n" for q in QUESTIONS))
    vertex.faults(expire_after_rows=2)  # cut off after 2 rows, as the 24-hour limit cuts a job
    settings = vertex.p.root / "batchrun.yaml"  # an expired job holds the next create back: not here
    settings.write_text(settings.read_text().replace("internal_retry_delay: 1",
                                                     "internal_retry_delay: 1, failure_backoff: 0"))
    _gcs_manifest(vertex)
    api.apply(vertex.project())
    vertex.settle()
    vertex.faults(expire_after_rows=None)
    final = vertex.converge()
    assert final.manifest("gem").rows.done == 5
    assert len(vertex.sent()) == 5  # the 2 answered before the cut were kept, not sent again
    states = sorted(j["state"] for j in vertex.fake_jobs())
    assert states == ["JOB_STATE_EXPIRED", "JOB_STATE_SUCCEEDED"]


def test_three_new_rows_in_a_bigquery_source_send_three(vertex: VertexWorld) -> None:
    schema = [("review_id", "STRING"), ("text", "STRING")]
    vertex.load_table("reviews", [{"review_id": f"{i:04d}", "text": f"r {i}"} for i in range(4)],
                      schema)
    vertex.p.write("gem.yaml", f"""\
        apiVersion: batchrun/v1
        kind: BatchJob
        metadata: {{name: gem}}
        spec:
          model: google/gemini-3.8-flash
          parameters: {{maxOutputTokens: 16}}
          source:
            bigquery: {{table: {vertex.table("reviews")}}}
            id: review_id
          prompt: {{user: "{{{{ text }}}}"}}
          destination:
            bigquery: {{table: {vertex.table("out")}}}
        """)
    vertex.converge()
    before = len(vertex.sent())
    vertex.load_table("reviews", [{"review_id": f"n{i}", "text": f"new {i}"} for i in range(3)],
                      schema)
    assert api.plan(vertex.project()).manifest("gem").rows.to_do == 3
    vertex.converge()
    assert len(vertex.sent()) == before + 3
    assert sorted(vertex.rows("out")) == ["0000", "0001", "0002", "0003", "n0", "n1", "n2"]


def test_gemini_embeddings_stage_and_answer_through_cloud_storage_into_bigquery(
        vertex: VertexWorld) -> None:
    """gemini-embedding-* take Cloud Storage only: rows are staged there and answered there, even
    for a BigQuery destination (collect merges them into it), and matched by their native key."""
    vertex.p.write("products.jsonl", "".join(
        json.dumps({"sku": f"{i:05d}", "title": f"Kettle {i}"}) + "\n" for i in range(3)))
    vertex.p.write("embed.yaml", f"""\
        apiVersion: batchrun/v1
        kind: BatchJob
        metadata: {{name: embed}}
        spec:
          model: google/gemini-embedding-001
          task: embeddings
          parameters: {{output_dimensionality: 8}}
          source: {{file: products.jsonl, id: sku}}
          prompt: {{input: "{{{{ title }}}}"}}
          destination:
            bigquery: {{table: {vertex.table("vectors")}}}
        """)
    final = vertex.converge()
    assert final.manifest("embed").rows.done == 3
    job = vertex.fake_jobs()[0]
    assert "gcsSource" in job["inputConfig"] and "gcsDestination" in job["outputConfig"]
    rows = vertex.rows("vectors")
    assert sorted(rows) == ["00000", "00001", "00002"]
    before = len(vertex.sent())
    vertex.converge()
    assert len(vertex.sent()) == before == 3

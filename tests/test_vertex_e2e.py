"""End to end through the real Google clients against the emulators and the fake Vertex server:
each path with a second apply that sends nothing, an incremental run and a retry of failed rows."""

from __future__ import annotations

from runner import api
from tests.vertex_env import VertexWorld

REVIEWS = [{"review_id": f"r{i}", "product": "Kettle", "rating": i % 5 + 1,
            "text": f"review number {i}"} for i in range(1, 6)]
SCHEMA = [("review_id", "STRING"), ("product", "STRING"), ("rating", "INT64"), ("text", "STRING")]


def test_bigquery_to_claude_to_bigquery(vertex: VertexWorld) -> None:
    vertex.load_table("reviews", REVIEWS, SCHEMA)
    vertex.faults(fail_rows=["r3"])
    vertex.p.write("reviews.yaml", f"""\
        apiVersion: batchrun/v1
        kind: BatchJob
        metadata: {{name: reviews}}
        spec:
          model: anthropic/claude-haiku-4-5@20251001
          parameters: {{max_tokens: 50}}
          source:
            bigquery: {{table: {vertex.table("reviews")}}}
            id: review_id
            columns: [review_id, product, rating, text]
          prompt: {{user: "{{{{ product }}}} {{{{ rating }}}}: {{{{ text }}}}"}}
          passthrough: [product, rating]
          destination:
            bigquery: {{table: {vertex.table("sentiment")}}}
        """)
    plan = api.plan(vertex.project())
    assert plan.manifest("reviews").rows.to_do == 5
    api.apply(vertex.project())
    plan = vertex.settle()
    vertex.faults(fail_rows=[])  # r3 succeeds on its retry
    final = vertex.converge()
    assert final.manifest("reviews").rows.done == 5
    rows = vertex.rows("sentiment")
    assert sorted(rows) == ["r1", "r2", "r3", "r4", "r5"]
    assert rows["r1"]["output"] == "Kettle 2: review number 1"
    assert rows["r1"]["product"] == "Kettle" and rows["r1"]["rating"] == 2
    assert all(r["status"] == "succeeded" for r in rows.values())
    assert vertex.sent_ids() == ["r1", "r2", "r3", "r3", "r4", "r5"]
    jobs = vertex.fake_jobs()
    assert all(j["inputConfig"]["instancesFormat"] == "bigquery" for j in jobs)

    before = len(vertex.sent())
    assert not api.plan(vertex.project()).has_changes
    vertex.converge()
    assert len(vertex.sent()) == before  # a second apply sends nothing

    vertex.load_table("reviews", [{"review_id": "r6", "product": "Toaster", "rating": 4,
                                   "text": "new"}], SCHEMA)
    assert api.plan(vertex.project()).manifest("reviews").rows.to_do == 1
    vertex.converge()
    assert vertex.sent_ids().count("r6") == 1 and len(vertex.sent()) == before + 1
    assert len(vertex.rows("sentiment")) == 6


def test_gcs_jsonl_to_llama_to_gcs_prefix(vertex: VertexWorld) -> None:
    vertex.upload("questions/part-1.jsonl", "".join(
        f'{{"qid": "q{i}", "question": "What is {i} + {i}?"}}\n' for i in range(1, 4)))
    vertex.upload("questions/part-2.jsonl", '{"qid": "q4", "question": "Why?"}\n')
    vertex.faults(fail_rows=["q2"])
    vertex.p.write("llama.yaml", f"""\
        apiVersion: batchrun/v1
        kind: BatchJob
        metadata: {{name: llama}}
        spec:
          model: meta/llama-4-maverick-17b-128e-instruct-maas
          parameters: {{max_tokens: 64}}
          source:
            gcs: {{uris: ["gs://{vertex.bucket}/questions/*.jsonl"]}}
            id: qid
          prompt: {{user: "Answer: {{{{ question }}}}"}}
          destination:
            gcs: {{prefix: "gs://{vertex.bucket}/answers"}}
        """)
    api.apply(vertex.project())
    vertex.settle()
    vertex.faults(fail_rows=[])
    final = vertex.converge()
    assert final.manifest("llama").rows.done == 4
    lines = [__import__("json").loads(x) for x in vertex.download("answers/results.jsonl").splitlines()]
    by_id = {r["custom_id"]: r for r in lines}
    assert sorted(by_id) == ["q1", "q2", "q3", "q4"]
    assert by_id["q1"]["output"] == "Answer: What is 1 + 1?"
    assert vertex.sent_ids() == ["q1", "q2", "q2", "q3", "q4"]
    job = vertex.fake_jobs()[0]
    out_dir = job["outputInfo"]["gcsOutputDirectory"]
    assert "prediction-model-" in out_dir and job["createTime"] not in out_dir
    before = len(vertex.sent())
    vertex.converge()
    assert len(vertex.sent()) == before
    vertex.upload("questions/part-3.jsonl", '{"qid": "q5", "question": "New?"}\n')
    vertex.converge()
    assert vertex.sent_ids().count("q5") == 1 and len(vertex.sent()) == before + 1


def test_local_csv_to_embeddings_to_bigquery(vertex: VertexWorld) -> None:
    vertex.p.write("products.csv", "sku,title\nK2,Kettle\nT1,Toaster\nG7,Grinder\n")
    vertex.faults(fail_rows=["T1"])
    vertex.p.write("embed.yaml", f"""\
        apiVersion: batchrun/v1
        kind: BatchJob
        metadata: {{name: embed}}
        spec:
          model: intfloat/multilingual-e5-small-maas
          task: embeddings
          source: {{file: products.csv, id: sku}}
          prompt: {{input: "{{{{ title }}}}"}}
          passthrough: [title]
          destination:
            bigquery: {{table: {vertex.table("vectors")}}}
        """)
    api.apply(vertex.project())
    vertex.settle()
    vertex.faults(fail_rows=[])
    vertex.converge()
    rows = vertex.rows("vectors")
    assert sorted(rows) == ["G7", "K2", "T1"]
    vector = rows["K2"]["output"]  # ARRAY<FLOAT64> in a table batchrun made (issue 23)
    assert len(vector) == 8 and all(isinstance(v, float) for v in vector)
    assert rows["K2"]["title"] == "Kettle"
    assert vertex.sent_ids() == ["G7", "K2", "T1", "T1"]
    before = len(vertex.sent())
    vertex.converge()
    assert len(vertex.sent()) == before
    with (vertex.p.root / "products.csv").open("a") as fh:
        fh.write("M1,Mixer\n")
    vertex.converge()
    assert len(vertex.sent()) == before + 1 and len(vertex.rows("vectors")) == 4

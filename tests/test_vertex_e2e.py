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
          model: anthropic/claude-3-5-haiku@20241022
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

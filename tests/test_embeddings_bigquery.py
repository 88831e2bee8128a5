"""Embeddings land in BigQuery as ARRAY<FLOAT64> (issue 23), not as JSON text in a STRING: a new
table gets `output FLOAT64 REPEATED`; a table made before, with a STRING output column, keeps
working (the vector is written there as JSON text, as before)."""

from __future__ import annotations

import json

from google.cloud import bigquery

from runner import api
from runner.answers.result import BIGQUERY_TYPES
from tests.vertex_env import RETRY, VertexWorld


def setup(vertex: VertexWorld) -> None:
    vertex.p.write("products.csv", "sku,title\nK2,Kettle\nT1,Toaster\n")
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


def output_field(vertex: VertexWorld) -> bigquery.SchemaField:
    table = vertex.bq.get_table(vertex.table("vectors"), retry=RETRY)
    return next(f for f in table.schema if f.name == "output")


def test_embeddings_land_as_an_array_of_float64(vertex: VertexWorld) -> None:
    setup(vertex)
    vertex.faults(fail_rows=["T1"])  # a failed row has no vector: an empty array, read as none
    api.apply(vertex.project())
    vertex.settle()
    vertex.faults(fail_rows=[])
    api.apply(vertex.project())  # collects: the table is made now; T1 is sent again
    field = output_field(vertex)
    assert field.field_type in ("FLOAT", "FLOAT64") and field.mode == "REPEATED"
    rows = vertex.rows("vectors")
    assert isinstance(rows["K2"]["output"], list) and len(rows["K2"]["output"]) == 8
    assert all(isinstance(v, float) for v in rows["K2"]["output"])
    stored = {r["custom_id"]: r for r in api.results(vertex.project(), "embed")}
    assert stored["T1"]["status"] == "failed" and stored["T1"]["output"] is None
    vertex.converge()
    results = {r["custom_id"]: r for r in api.results(vertex.project(), "embed")}
    assert isinstance(results["T1"]["output"], list) and results["T1"]["status"] == "succeeded"
    assert vertex.sent_ids() == ["K2", "T1", "T1"]  # nothing sent again once answered
    assert output_field(vertex).mode == "REPEATED"


def test_a_table_with_a_string_output_column_keeps_working(vertex: VertexWorld) -> None:
    setup(vertex)
    schema = [bigquery.SchemaField(name, kind) for name, kind in
              [("custom_id", "STRING"), ("title", "STRING"), *BIGQUERY_TYPES.items()]
              if name != "custom_id" or kind == "STRING"]
    schema = list({f.name: f for f in schema}.values())
    vertex.bq.create_table(bigquery.Table(vertex.table("vectors"), schema=schema), retry=RETRY)
    assert output_field(vertex).field_type == "STRING"
    vertex.converge()
    rows = vertex.rows("vectors")
    assert sorted(rows) == ["K2", "T1"]
    vector = json.loads(rows["K2"]["output"])  # JSON text in the STRING column, as before
    assert len(vector) == 8 and all(isinstance(v, float) for v in vector)
    assert output_field(vertex).field_type == "STRING"
    results = {r["custom_id"]: r for r in api.results(vertex.project(), "embed")}
    assert len(json.loads(results["K2"]["output"])) == 8  # as such a table always gave it

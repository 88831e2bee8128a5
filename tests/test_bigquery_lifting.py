"""BigQuery does the lifting for a BigQuery source into a BigQuery table: the rows already answered
stay in BigQuery (an anti-join on fingerprints computed there), only the change reaches the client.
Counted at the client (`BigQuery.pulled`: source rows; `ledger_read`: destination ledger rows),
against the emulator."""

from __future__ import annotations

import pytest
from google.cloud import bigquery

from runner import api
from runner.backends.stores.bqsource import FP, fingerprinted, schema_salt
from runner.errors import BatchrunError
from tests.vertex_env import RETRY, VertexWorld


def manifest(vertex: VertexWorld, source: str) -> str:
    return f"""\
        apiVersion: batchrun/v1
        kind: BatchJob
        metadata: {{name: notes}}
        spec:
          model: anthropic/claude-haiku-4-5@20251001
          parameters: {{max_tokens: 20}}
          source:
            bigquery: {source}
            id: id
          prompt: {{user: "Label: {{{{ text }}}}"}}
          destination:
            bigquery: {{table: {vertex.table("labels")}}}
        """


def sql(vertex: VertexWorld, statement: str) -> None:
    vertex.bq.query(statement, retry=RETRY).result(timeout=120)


def rows_sql(first: int, last: int) -> str:
    return (f"SELECT CONCAT('r', CAST(n AS STRING)) AS id, CONCAT('note ', CAST(n AS STRING)) "
            f"AS text, n AS n FROM UNNEST(GENERATE_ARRAY({first}, {last})) AS n")


def plan_counting(vertex: VertexWorld) -> tuple[api.Plan, int]:
    """The plan, and the rows that reached the client: source rows and destination ledger rows."""
    project = vertex.project()
    backend = api.open_backend(project)
    plan = api.plan(project, backend=backend)
    return plan, backend.bq.pulled + backend.bq.ledger_read  # type: ignore[attr-defined]


def answer_in_sql(vertex: VertexWorld, source: str, first: int, last: int) -> None:
    """Rows first..last recorded as answered under the manifest's spec the way a collect records
    them (with BigQuery's fingerprint of the source row): 100k real answers would take the fake
    Vertex server minutes."""
    salt = schema_salt(vertex.bq.get_table(source).schema)
    spec = vertex.project().manifest("notes").spec_hash
    config = bigquery.QueryJobConfig(query_parameters=[
        bigquery.ScalarQueryParameter("salt", "STRING", salt)])
    vertex.bq.query(
        f"INSERT INTO `{vertex.table('labels')}` (custom_id, status, spec_hash, request_hash, "
        f"source_fp, output) SELECT id, 'succeeded', '{spec}', 'recorded', {FP}, 'label' "
        f"FROM ({fingerprinted(f'`{source}`')}) WHERE n BETWEEN {first} AND {last}",
        job_config=config, retry=RETRY).result(timeout=120)


@pytest.mark.parametrize("total", [2_000, pytest.param(100_000, marks=pytest.mark.slow, id="100k")])
def test_a_plan_pulls_only_the_new_rows_of_a_big_source(vertex: VertexWorld, total: int) -> None:
    """make test at 2,000 rows; make soak (the slow mark) at 100,000: the same count of rows
    reaching the client, whatever the table's size."""
    old = total - 100
    source = vertex.table("notes")
    sql(vertex, f"CREATE TABLE `{source}` AS {rows_sql(1, 5)}")
    vertex.p.write("notes.yaml", manifest(vertex, f"{{table: {source}}}"))
    vertex.converge()  # five real answers: the destination as collect makes it
    assert len(vertex.sent()) == 5
    sql(vertex, f"INSERT INTO `{source}` (id, text, n) {rows_sql(6, old)}")
    answer_in_sql(vertex, source, 6, old)
    plan, pulled = plan_counting(vertex)
    assert (plan.manifest("notes").rows.done, pulled) == (old, 0)  # the real five included

    sql(vertex, f"INSERT INTO `{source}` (id, text, n) {rows_sql(old + 1, total)}")
    plan, pulled = plan_counting(vertex)
    rows = plan.manifest("notes").rows
    assert (rows.total, rows.done, rows.to_do) == (total, old, 100)
    assert pulled == 100  # only the new rows reached the client (no ledger row either)

    vertex.converge(timeout=300)
    sent = vertex.sent()
    assert len(sent) == 105
    assert sorted(s["custom_id"] for s in sent[5:]) == sorted(
        f"r{n}" for n in range(old + 1, total + 1))
    plan, pulled = plan_counting(vertex)  # the new answers' fingerprints are BigQuery's too
    assert not plan.has_changes and plan.manifest("notes").rows.done == total
    assert pulled == 0


def test_edited_and_retyped_rows_are_pulled_and_sent_again(vertex: VertexWorld) -> None:
    """The fingerprint is BigQuery's, over every column and the columns' types: an edited row and a
    column whose type changed are the change; an unchanged row is not."""
    source = vertex.table("notes")
    sql(vertex, f"CREATE TABLE `{source}` AS {rows_sql(1, 50)}")
    query = f"SELECT id, text, n FROM `{source}`"
    vertex.p.write("notes.yaml", manifest(vertex, f'{{query: "{query}"}}'))
    vertex.converge()
    assert len(vertex.sent()) == 50

    sql(vertex, f"UPDATE `{source}` SET text = 'edited' WHERE id = 'r7'")
    plan, pulled = plan_counting(vertex)
    assert (plan.manifest("notes").rows.to_do, pulled) == (1, 2)  # the row, and its old answer
    vertex.converge()
    assert vertex.sent_ids().count("r7") == 2

    # n read as FLOAT64: every row is new to BigQuery's fingerprint, and the rows whose request
    # is the same (n is not in the prompt) are recognised once rendered: nothing is sent.
    retyped = f"SELECT id, text, CAST(n AS FLOAT64) AS n FROM `{source}`"
    vertex.p.write("notes.yaml", manifest(vertex, f'{{query: "{retyped}"}}'))
    plan, pulled = plan_counting(vertex)
    assert pulled == 100 and plan.manifest("notes").rows.to_do == 0  # 50 rows + 50 answers
    assert plan.manifest("notes").rows.done == 50


def test_duplicate_ids_are_reported_although_their_rows_were_answered(vertex: VertexWorld) -> None:
    source = vertex.table("notes")
    sql(vertex, f"CREATE TABLE `{source}` AS {rows_sql(1, 20)}")
    vertex.p.write("notes.yaml", manifest(vertex, f"{{table: {source}}}"))
    vertex.converge()
    sql(vertex, f"INSERT INTO `{source}` (id, text, n) VALUES ('r5', 'a second r5', 5)")
    with pytest.raises(BatchrunError) as caught:
        api.plan(vertex.project())
    assert "r5" in str(caught.value) and "duplicate" in str(caught.value)

"""Issue 22: a name reaches batchrun's own SQL only through runner/backends/stores/sqlnames.py,
which refuses what BigQuery's naming rules refuse and quotes the rest, and every statement batchrun
builds runs only once a dry run says it is the one statement meant. The report's payload and its
variants go through every SQL path against the emulator: `victim` keeps its rows, and `plan` fails
with one message naming the manifest's file, line and field."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from runner import api
from runner.backends.stores import sqlnames
from runner.backends.stores.bq import BigQuery, UnsafeStatementError
from runner.backends.stores.sqlnames import UnsafeNameError
from runner.cli import commands as cli
from runner.rows.records import AnsweredIn
from tests.vertex_env import PROJECT, RETRY, VertexWorld

VICTIM_ROWS = 3
LEDGER = [("custom_id", "STRING"), ("status", "STRING"), ("spec_hash", "STRING"),
          ("request_hash", "STRING"), ("source_fp", "STRING")]


def payload(victim: str) -> str:
    """The report's id column: it closes the duplicate check's quoting and runs a DELETE."""
    return ("id` FROM src GROUP BY 1 HAVING COUNT(*) > 1)) AS n; "
            f"DELETE FROM `{victim}` WHERE TRUE; SELECT 0 AS n --")


def merge_payload(victim: str) -> str:
    """A result column that closes the MERGE's quoting and runs a DELETE after it."""
    return (f"status` = S.`status`; DELETE FROM `{victim}` WHERE TRUE; SELECT 1 AS `x")


def bad_names(vertex: VertexWorld) -> dict[str, str]:
    victim = vertex.table("victim")
    return {"backtick": payload(victim), "merge": merge_payload(victim), "newline": "id\nx",
            "semicolon": "id;x", "backslash": "id\\x", "empty": ""}


def quoted(name: str) -> str:
    """`name` as a BigQuery quoted identifier, the way a user's query would alias a column."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`").replace("\n", "\\n") + "`"


@pytest.fixture
def world(vertex: VertexWorld) -> Iterator[VertexWorld]:
    vertex.load_table("notes", [{"id": f"r{n}", "text": f"note {n}"} for n in range(1, 4)],
                      [("id", "STRING"), ("text", "STRING")])
    vertex.load_table("victim", [{"x": n} for n in range(VICTIM_ROWS)], [("x", "INT64")])
    # A destination with the ledger's columns: the push-down reads it beside the source.
    vertex.load_table("labels", [], LEDGER)
    yield vertex
    assert victim_rows(vertex) == VICTIM_ROWS  # every test: nothing ran that deletes


def victim_rows(vertex: VertexWorld) -> int:
    rows = vertex.bq.query(f"SELECT COUNT(*) AS n FROM `{vertex.table('victim')}`",
                           retry=RETRY).result(timeout=60)
    return int(next(iter(rows))["n"])


def manifest(vertex: VertexWorld, query: str, id_column: str, *, passthrough: str = "",
             destination: str | None = None) -> str:
    # JSON strings are YAML strings: any name, backticks and newlines included, written exactly.
    more = f"\n  passthrough: [{json.dumps(passthrough)}]" if passthrough else ""
    return f"""\
apiVersion: batchrun/v1
kind: BatchJob
metadata: {{name: notes}}
spec:
  model: anthropic/claude-haiku-4-5@20251001
  parameters: {{max_tokens: 20}}
  source:
    bigquery: {{query: {json.dumps(query)}}}
    id: {json.dumps(id_column)}
  prompt: {{user: "Label: {{{{ text }}}}"}}{more}
  destination:
    bigquery: {{table: {json.dumps(destination or vertex.table("labels"))}}}
"""


def plan_cli(vertex: VertexWorld) -> str:
    result = CliRunner().invoke(cli.main, ["--config", str(vertex.p.root / "batchrun.yaml"),
                                           "plan"])
    out = result.stdout + result.stderr
    assert result.exit_code == 1, out
    assert "Traceback" not in out and "unexpected" not in out, out
    return out


def line_of(text: str, start: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if line.lstrip().startswith(start))


# --- plan, end to end: the id column a query source aliases -------------------------------------

@pytest.mark.parametrize("kind", ["backtick", "newline", "semicolon", "backslash"])
def test_a_query_alias_that_breaks_quoting_is_refused_at_its_id_line(
        world: VertexWorld, kind: str) -> None:
    """The report: `id` named a column the query aliased with a backtick in its name, and the
    duplicate check ran the DELETE it carried during `batchrun plan`."""
    name = bad_names(world)[kind]
    text = manifest(world, f"SELECT id, text, id AS {quoted(name)} FROM `{world.table('notes')}`",
                    name)
    world.p.write("notes.yaml", text)
    out = plan_cli(world)
    assert "cannot be a BigQuery column name" in out, out
    assert f"in notes.yaml, line {line_of(text, 'id:')}, at spec.source.id" in out, out
    assert victim_rows(world) == VICTIM_ROWS


def test_the_first_plan_refuses_it_before_anything_is_paid_for(world: VertexWorld) -> None:
    """No destination table yet: no SQL names the id column now, the next plan's would."""
    name = bad_names(world)["backtick"]
    text = manifest(world, f"SELECT id, text, id AS {quoted(name)} FROM `{world.table('notes')}`",
                    name, destination=world.table("fresh"))
    world.p.write("notes.yaml", text)
    assert f"line {line_of(text, 'id:')}, at spec.source.id" in plan_cli(world)
    with pytest.raises(UnsafeNameError):
        world.converge()
    assert world.sent() == []


def test_a_passthrough_alias_with_a_backtick_is_refused_at_plan(world: VertexWorld) -> None:
    name = merge_payload(world.table("victim"))
    text = manifest(world, f"SELECT id, text, id AS {quoted(name)} FROM `{world.table('notes')}`",
                    "id", passthrough=name)
    world.p.write("notes.yaml", text)
    out = plan_cli(world)
    assert f"in notes.yaml, line {line_of(text, 'passthrough:')}, at spec.passthrough" in out, out


def test_a_destination_table_with_a_backtick_is_refused_at_plan(world: VertexWorld) -> None:
    dest = world.table("labels") + f"` WHERE TRUE; DELETE FROM `{world.table('victim')}"
    text = manifest(world, f"SELECT id, text FROM `{world.table('notes')}`", "id",
                    destination=dest)
    world.p.write("notes.yaml", text)
    out = plan_cli(world)
    assert f"in notes.yaml, line {line_of(text, 'bigquery: {table')}" in out, out


# --- every SQL path of the backend, past the manifest's checks ----------------------------------

def backend_bq(world: VertexWorld) -> BigQuery:
    return BigQuery(PROJECT, world.bq, deadline=10)


def answered(world: VertexWorld, *, id_column: str = "id", destination: str | None = None,
             passthrough: tuple[str, ...] = ()) -> AnsweredIn:
    return AnsweredIn(destination or world.table("labels"), "bigquery", "spec", id_column,
                      "vertex", passthrough)


PATHS = ["fingerprint", "anti-join", "duplicate check", "ledger read", "ledger columns",
         "estimate totals", "destination columns", "merge table", "merge column"]


def run_path(world: VertexWorld, path: str, name: str) -> Any:
    """One SQL path of the vertex backend with `name` where that path puts a name."""
    bq = backend_bq(world)
    notes, labels = world.table("notes"), world.table("labels")
    bad_table = f"{PROJECT}.{world.dataset}.{name}"
    alias = f", id AS {quoted(name)}" if name else ""  # no query can alias a column ``
    query = f"SELECT id, text{alias} FROM `{notes}`"
    match path:
        case "fingerprint":  # the source table, read whole
            return list(bq.read_rows(table=bad_table))
        case "anti-join":  # the destination the answered rows are left out by
            return list(bq.read_rows(table=notes, answered=answered(world, destination=bad_table)))
        case "duplicate check":  # the id column the ids sent are grouped by
            return list(bq.read_rows(query=query, answered=answered(world, id_column=name)))
        case "ledger read":
            return bq.read_ledger(None, query, answered(world, id_column=name), ["custom_id"])
        case "ledger columns":
            ledger = bq.read_ledger(notes, None, answered(world), ["custom_id", name])
            return None if ledger is None else list(ledger.rows)
        case "estimate totals":
            return bq.read_ledger(notes, None, answered(world, destination=bad_table), ["status"])
        case "destination columns":
            return list(bq.destination_rows(labels, ["custom_id", name]))
        case "merge table":
            return bq.merge(bad_table, [{"custom_id": "r1", "status": "succeeded"}])
        case "merge column":
            return bq.merge(labels, [{"custom_id": "r1", "status": "succeeded", name: "x"}])
    raise AssertionError(path)


@pytest.mark.parametrize("path", PATHS)
def test_every_sql_path_refuses_a_name_bigquery_would_refuse(world: VertexWorld,
                                                            path: str) -> None:
    for kind, name in bad_names(world).items():
        with pytest.raises(UnsafeNameError):
            run_path(world, path, name)
        assert victim_rows(world) == VICTIM_ROWS, (path, kind)
    assert world.rows("labels") == {}  # nothing merged, nothing half-written


# --- the statement batchrun built is the one it meant ---------------------------------------------

def test_a_statement_that_is_not_the_one_meant_never_runs(world: VertexWorld) -> None:
    bq = backend_bq(world)
    victim = world.table("victim")
    for sql in (f"SELECT 1 AS n; DELETE FROM `{victim}` WHERE TRUE",
                f"DELETE FROM `{victim}` WHERE TRUE"):
        with pytest.raises(UnsafeStatementError):
            list(bq.query(sql))
        with pytest.raises(UnsafeStatementError):
            bq.run(sql, expect="MERGE")
    assert next(iter(bq.query(f"SELECT COUNT(*) AS n FROM `{victim}`")))["n"] == VICTIM_ROWS


class CountingClient:
    """The real BigQuery client, with the statements it was asked to dry-run counted."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.dry: list[str] = []

    def query(self, sql: str, job_config: Any = None, **kwargs: Any) -> Any:
        if job_config is not None and job_config.dry_run:
            self.dry.append(sql)
        return self.client.query(sql, job_config=job_config, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def test_each_statement_batchrun_builds_is_dry_run_once_a_command(world: VertexWorld) -> None:
    counting = CountingClient(world.bq)
    bq = BigQuery(PROJECT, counting, deadline=10)
    query = f"SELECT id, text FROM `{world.table('notes')}`"
    for _ in range(2):  # a command that plans twice (apply --wait) asks BigQuery once a statement
        ledger = bq.read_ledger(None, query, answered(world), ["custom_id"])
        assert ledger is not None and list(ledger.rows) == []
        assert len(list(bq.read_rows(query=query, answered=answered(world)))) == 4  # 3 + count
    ours = [sql for sql in counting.dry if sql != query]
    assert len(ours) == len(set(ours)) == 5, counting.dry  # each checked, none twice


def test_flexible_column_names_are_quoted_not_refused(world: VertexWorld) -> None:
    """Letters of any language, dashes, spaces and '&' are names a user may really have."""
    name = "客户-id & é"
    world.p.write("notes.yaml", manifest(
        world, f"SELECT id AS {quoted(name)}, text FROM `{world.table('notes')}`", name))
    world.converge()
    assert world.sent_ids() == ["r1", "r2", "r3"]
    project = world.project()
    backend = api.open_backend(project)
    plan = api.plan(project, backend=backend)
    assert plan.manifest("notes").rows.done == 3 and not plan.has_changes
    assert backend.bq.pulled == 0  # type: ignore[attr-defined]  # pushed down, the name quoted


# --- the rules themselves ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["id", "_x", "5abc", "客户-id & é", "a b", "Ünïcode", "x" * 300,
                                  "a%b=c+d:e'f<g>h#i|j", "a\u2014b", "e\u0301"])
def test_a_column_name_bigquery_allows_is_quoted(name: str) -> None:
    assert sqlnames.column(name) == f"`{name}`"


@pytest.mark.parametrize("name", ["", "x" * 301, "a`b", "a\\b", "a\nb", "a\rb", "a\tb", "a.b",
                                  "a;b", "a$b", 'a"b', "a(b", "a,b", "a@b", "a/b", "a*b", "a\x00b",
                                  "n°"])
def test_a_column_name_bigquery_refuses_is_refused(name: str) -> None:
    with pytest.raises(UnsafeNameError) as caught:
        sqlnames.column(name, field="spec.source.id")
    assert caught.value.diagnostics[0].path == "spec.source.id"


@pytest.mark.parametrize("ref", ["my-proj.ds.t", "example.com:my-proj.d_1.t", "my-proj.d.tab le-名",
                                 "my-proj.D.T_1", "my-proj.d." + "x" * 1024])
def test_a_table_bigquery_allows_is_quoted(ref: str) -> None:
    assert sqlnames.table(ref) == f"`{ref}`"


@pytest.mark.parametrize("ref", ["p.d.t", "My-Proj.d.t", "my_proj.d.t", "my-proj-.d.t", "my-proj.d",
                                 "my-proj.d-s.t", "my-proj.d.t$20240101", "my-proj.d.t`x",
                                 "my-proj.d.t\\x", "my-proj.d.t\nx", "my-proj.d.t;x", "my-proj.d.",
                                 "my-proj.d.a.b", "my-proj.d." + "é" * 513])
def test_a_table_bigquery_refuses_is_refused(ref: str) -> None:
    with pytest.raises(UnsafeNameError):
        sqlnames.table(ref)


def test_a_query_source_bigquery_cannot_parse_is_a_located_error(world: VertexWorld) -> None:
    """Red team: a syntax error in the user's query read `unexpected BadRequest`."""
    text = manifest(world, f"SELEC id, text FROM `{world.table('notes')}`", "id")
    world.p.write("notes.yaml", text)
    out = plan_cli(world)
    assert "BigQuery cannot run the source query" in out and "unexpected" not in out, out
    assert "at spec.source.bigquery.query" in out, out
    assert victim_rows(world) == VICTIM_ROWS

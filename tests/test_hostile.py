"""Hostile and careless input (issue 11), as a pull request or a careless user would write it: a plan
that cannot write, destinations that belong to exactly one manifest, paths that stay in the
project, limits on YAML and templates, secrets never stored, corrupt state contained."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from runner import api
from runner.backends.base import JobRequest, RemoteJob
from runner.spec import DestinationSpec
from tests.conftest import ProjectDir
from tests.fakes import FakeBackend
from tests.vertex_env import VertexWorld


def batchrun(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[
        str]:
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=root, text=True,
                          capture_output=True, timeout=120, check=False,
                          env={**os.environ, **(env or {})})


# --- 1. plan runs no SQL but a single SELECT ----------------------------------------------------

@pytest.mark.parametrize(("query", "kind"), [
    ("DROP TABLE `{victim}`; SELECT 'x1' AS id, 'hi' AS text", "SCRIPT"),
    ("DELETE FROM `{victim}` WHERE true", "DELETE"),
    ("CREATE TABLE `{victim}_2` AS SELECT 'x1' AS id, 'hi' AS text", "CREATE_TABLE_AS_SELECT"),
])
def test_plan_refuses_a_query_source_that_would_write(vertex: VertexWorld, query: str,
                                                      kind: str) -> None:
    vertex.load_table("victim", [{"id": "v1"}], [("id", "STRING")])
    sql = query.format(victim=vertex.table("victim"))
    vertex.p.write("q.yaml", f"""\
        apiVersion: batchrun/v1
        kind: BatchJob
        metadata: {{name: q}}
        spec:
          model: anthropic/claude-3-5-haiku@20241022
          parameters: {{max_tokens: 10}}
          source:
            bigquery:
              query: "{sql}"
            id: id
            columns: [id, text]
          prompt: {{user: "{{{{ text }}}}"}}
          destination: {{file: out/q.jsonl}}
        """)
    result = batchrun(vertex.p.root, "plan", env=vertex.env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert (f"Error: refusing to run a query source that BigQuery reads as a {kind} statement; "
            "only a single SELECT may be a source\n  in q.yaml, line 9, at "
            "spec.source.bigquery.query") in result.stderr
    assert "Traceback" not in result.stderr
    tables = {t.table_id for t in vertex.bq.list_tables(vertex.dataset)}
    assert tables == {"victim"}
    assert [dict(r) for r in vertex.bq.list_rows(vertex.table("victim"))] == [{"id": "v1"}]


def test_a_select_query_source_still_plans(vertex: VertexWorld) -> None:
    vertex.p.write("q.yaml", """\
        apiVersion: batchrun/v1
        kind: BatchJob
        metadata: {name: q}
        spec:
          model: anthropic/claude-3-5-haiku@20241022
          parameters: {max_tokens: 10}
          source:
            bigquery: {query: "SELECT 'x1' AS id, 'hi' AS text"}
            id: id
            columns: [id, text]
          prompt: {user: "{{ text }}"}
          destination: {file: out/q.jsonl}
        """)
    assert api.plan(vertex.project()).manifest("q").rows.to_do == 1


# --- apply --wait cannot loop paying -------------------------------------------------------------

class _Forgetful(FakeBackend):
    """A destination that records nothing: every answer collected is lost on the way."""

    def write_destination(self, dest: DestinationSpec, rows: Iterable[tuple[dict[str, Any], bool]],
                          *, collected: Iterable[str]) -> None:
        super().write_destination(dest, iter(()), collected=collected)

    def create_job(self, request: JobRequest) -> RemoteJob:
        job = super().create_job(request)
        self.run(job.name)
        return self.jobs[job.name]


def test_the_same_rows_sent_again_without_an_answer_landing_block_the_manifest(
        project_dir: ProjectDir) -> None:
    project_dir.write("batchrun.yaml", "quota: {failure_backoff: 0}\n")
    fake = _Forgetful()
    final = api.converge(api.load_project(cwd=project_dir.root), backend=fake,
                         poll_interval=0.01, timeout=10)
    m = final.manifest("triage")
    assert m.blocked is not None and m.blocked.failures == 3
    assert "none of its rows' answers or refusals reached the destination" in m.blocked.error
    assert len(fake.created()) == 3  # three jobs, not one a second until killed
    assert set(fake.sent.values()) == {3}

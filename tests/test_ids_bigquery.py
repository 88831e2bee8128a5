"""A row has one id (issue 21), with a BigQuery source into a BigQuery table: the push-down's
duplicate check groups the custom_id that is sent, computed in SQL as rendering computes it, so an
answered row left in BigQuery never shares its id with a row that is sent. Against the emulator."""

from __future__ import annotations

import hashlib
import random

from google.cloud import bigquery

from runner import api
from runner.backends.stores.bqsource import sent_id
from runner.errors import RenderError
from runner.rendering.row import Renderer, RowError
from runner.rows.records import SourceRow
from tests.vertex_env import RETRY, VertexWorld

SHAPED = "h" + hashlib.sha256(b"a b").hexdigest()[:40]  # "a b" hashed: another row's raw id


def manifest(vertex: VertexWorld, source: str, id_spec: str = "{column: id, hash: true}") -> str:
    return f"""\
        apiVersion: batchrun/v1
        kind: BatchJob
        metadata: {{name: notes}}
        spec:
          model: anthropic/claude-haiku-4-5@20251001
          parameters: {{max_tokens: 20}}
          source: {{bigquery: {{table: {source}}}, id: {id_spec}}}
          prompt: {{user: "Label: {{{{ text }}}}"}}
          destination:
            bigquery: {{table: {vertex.table("labels")}}}
        """


def plan_counting(vertex: VertexWorld) -> tuple[api.Plan, int]:
    project = vertex.project()
    backend = api.open_backend(project)
    plan = api.plan(project, backend=backend)
    return plan, backend.bq.pulled  # type: ignore[attr-defined]


def test_a_row_whose_raw_id_is_another_rows_hash_is_sent_once_under_its_own_id(
        vertex: VertexWorld) -> None:
    """The report: the row `a b`, added after the row whose raw id is its hash was answered, was
    sent under that row's id; their answers overwrote each other on alternate applies."""
    source = vertex.table("notes")
    vertex.load_table("notes", [{"id": "r1", "text": "one"}, {"id": SHAPED, "text": "first"}],
                      [("id", "STRING"), ("text", "STRING")])
    vertex.p.write("notes.yaml", manifest(vertex, source))
    vertex.converge()
    vertex.load_table("notes", [{"id": "a b", "text": "second"}],
                      [("id", "STRING"), ("text", "STRING")])
    plan, pulled = plan_counting(vertex)
    assert (plan.manifest("notes").rows.to_do, pulled) == (1, 1)  # the answered rows stay there
    vertex.converge()
    sent = vertex.sent_ids()
    assert len(sent) == len(set(sent)) == 3  # each row once, each under its own id
    assert SHAPED in sent  # it is "a b"'s; the row whose raw id it is sends a hash of it
    for _ in range(2):  # nothing alternates: later applies send nothing
        vertex.converge()
    assert len(vertex.sent()) == 3
    ids = sorted(str(r["id"]) for r in vertex.rows("labels").values())
    assert ids == sorted(["r1", SHAPED, "a b"])


def test_a_real_duplicate_among_answered_rows_is_refused_naming_both_and_sends_nothing(
        vertex: VertexWorld) -> None:
    source = vertex.table("notes")
    vertex.load_table("notes", [{"id": "a b", "text": "one"}, {"id": "r2", "text": "two"}],
                      [("id", "STRING"), ("text", "STRING")])
    vertex.p.write("notes.yaml", manifest(vertex, source))
    vertex.converge()
    vertex.load_table("notes", [{"id": "a b", "text": "again"}],
                      [("id", "STRING"), ("text", "STRING")])
    try:
        vertex.converge()
    except RenderError as exc:
        text = str(exc)
    else:
        raise AssertionError("a duplicate id was not refused")
    assert "(id 'a b'): duplicate id, first seen at row" in text  # the id the user knows
    assert len(vertex.sent()) == 2 and len(vertex.fake_jobs()) == 1  # the first apply's only


# --- the sent id, in SQL, is the rendering's ---------------------------------------------------------

def _ids() -> list[str]:
    rnd = random.Random(21)
    letters = "abcXYZ019_-"
    out = ["r1", "-", "_", "a" * 10, "a" * 11, "a" * 64, "a" * 65, "a" * 100, "support/42 é",
           "a b", "é", "😀", "😀" * 10, "x😀", "tab\there", SHAPED, "h" + "0" * 40, "h" + "0" * 39,
           "h" + "0" * 41, "H" + "0" * 40, "h" + "A" * 40, "h" + "f" * 40, "hh" + "0" * 39]
    for _ in range(150):
        n = rnd.choice([1, 5, 9, 10, 11, 41, 63, 64, 65, 80])
        out.append("".join(rnd.choice(letters + (" /é" if rnd.random() < 0.3 else ""))
                           for _ in range(n)))
        out.append("h" + "".join(rnd.choice("0123456789abcdef") for _ in range(40)))
    return sorted(set(out))


def test_the_id_sent_is_computed_in_sql_as_render_computes_it(vertex: VertexWorld) -> None:
    strings = _ids()
    numbers = [0, 7, -7, 10**9, -(10**12), 2**62]
    vertex.load_table("s", [{"id": s} for s in strings], [("id", "STRING")])
    vertex.load_table("n", [{"id": n} for n in numbers], [("id", "INT64")])
    vertex.p.write("notes.yaml", manifest(vertex, vertex.table("s")))
    base = vertex.project().manifest("notes")
    checked = 0
    for table, field_type in (("s", "STRING"), ("n", "INT64")):
        for id_hash in (True, False):
            for max_chars in (64, 10):
                key = sent_id("id", field_type, id_hash=id_hash, max_chars=max_chars)
                got = {r["id"]: r["sent"] for r in vertex.bq.query(
                    f"SELECT id, {key} AS sent FROM `{vertex.table(table)}`",
                    job_config=bigquery.QueryJobConfig(), retry=RETRY).result(timeout=60)}
                render = Renderer(_with_hash(base, id_hash), max_request_bytes=10**6,
                                  max_id_chars=max_chars)
                for raw, sent in got.items():
                    try:
                        expected = render.custom_id(SourceRow(1, {"id": raw}))
                    except RowError:
                        continue  # refused when rendered: what SQL groups it under is moot
                    # An INT64 id sent as it is is grouped as the number: it prints as the id sent.
                    assert str(sent) == expected, (raw, field_type, id_hash, max_chars)
                    checked += 1
    assert checked > 400


def _with_hash(manifest: api.Manifest, id_hash: bool) -> api.Manifest:
    from dataclasses import replace

    return replace(manifest, source=replace(manifest.source, id_hash=id_hash))

"""Issue 27: the Gemini request family offline — rendering (golden per prompt shape, the fast path
equal to the template path), parameters and places checked at plan, the importer's triggers
refused before anything is staged, and Gemini's output rows read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from runner import api
from runner.answers.fault import Fault, fault_of
from runner.answers.outputs import parse_line
from runner.errors import ManifestError, RenderError
from runner.rendering.gemini import importable_schema
from runner.rendering.row import Renderer
from runner.spec import Family
from tests.conftest import ProjectDir

SHAPES = {
    "user": '{user: "{{ text }}"}',
    "system": '{system: "Be brief.", user: "{{ text }}"}',
    "examples": '{system: "Classify.", examples: [{user: "I love it", assistant: "positive"}, '
                '{user: "Broken", assistant: "negative"}], user: "{{ text }}"}',
    "template": '{user: "{% for w in text.split() %}[{{ w }}]{% endfor %}"}',
}


def _manifest(prompt: str, extra: str = "", params: str = "{maxOutputTokens: 32}",
              model: str = "google/gemini-3.8-flash", source: str = "{file: rows.jsonl, id: id}",
              destination: str = "{file: out.jsonl}") -> str:
    return f"""\
apiVersion: batchrun/v1
kind: BatchJob
metadata: {{name: gem}}
spec:
  model: {model}
  parameters: {params}
  source: {source}
  prompt: {prompt}
  destination: {destination}
{extra}"""


def _render(tmp_path: Path, text: str, rows: str = '{"id": "000042", "text": "Hi there"}\n'
            ) -> list[bytes]:
    p = ProjectDir(tmp_path)
    p.write("rows.jsonl", rows)
    p.write("gem.yaml", text)
    return list(api.render(api.load_project(cwd=tmp_path), "gem"))


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_each_prompt_shape_renders_as_a_generate_content_request(
        tmp_path: Path, golden, shape: str) -> None:  # type: ignore[no-untyped-def]
    (line,) = _render(tmp_path, _manifest(SHAPES[shape]))
    golden(f"gemini_render_{shape}.jsonl", line.decode() + "\n")
    row = orjson.loads(line)
    assert row["custom_id"] == "br-000042"  # no importer reads it as the number 42
    assert set(row) == {"custom_id", "request"} and "model" not in row["request"]


def test_a_json_response_is_asked_with_a_schema_the_importer_accepts(
        tmp_path: Path, golden) -> None:  # type: ignore[no-untyped-def]
    (line,) = _render(tmp_path, _manifest(SHAPES["user"], """\
  response:
    format: json
    schema:
      $schema: https://json-schema.org/draft/2020-12/schema
      $defs: {label: {type: string, enum: [positive, negative]}}
      type: object
      properties:
        label: {$ref: "#/$defs/label"}
        score: {type: [number, "null"], description: null}
      required: [label]
"""))
    golden("gemini_render_json.jsonl", line.decode() + "\n")
    config = orjson.loads(line)["request"]["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"] == {
        "type": "object", "properties": {
            "label": {"type": "string", "enum": ["positive", "negative"]},
            "score": {"anyOf": [{"type": "number"}, {"type": "null"}]}},
        "required": ["label"]}


def test_importable_schema_leaves_out_what_fails_the_import() -> None:
    schema = {"$id": "x", "type": "object", "properties": {"a": {}, "b": {"type": ["string"]}},
              "additionalProperties": {}, "definitions": {"d": {"type": "integer"}},
              "required": []}
    assert importable_schema(schema) == {"type": "object", "properties": {"b": {"type": "string"}}}


def test_requests_rows_are_sent_with_the_id_and_the_request_alone(tmp_path: Path) -> None:
    rows = '{"id": "7", "request": {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}, "x": 1}\n'
    (line,) = _render(tmp_path, _manifest("{}", source="{file: rows.jsonl, id: id, format: requests}"),
                      rows)
    assert orjson.loads(line) == {"custom_id": "br-7", "request": {
        "contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}}


def test_the_fast_path_writes_what_the_templates_write(tmp_path: Path) -> None:
    p = ProjectDir(tmp_path)
    p.write("rows.jsonl", "")
    p.write("gem.yaml", _manifest(SHAPES["examples"], params="{maxOutputTokens: 8, topP: 0.5}"))
    manifest = api.load_project(cwd=tmp_path).manifests[0]
    renderer = Renderer(manifest, max_request_bytes=10_000_000)
    from runner.rows.records import SourceRow

    for text in ["plain", 'quote " and \\ back', "ünïcødé ✓", "{{ not a template }}", ""]:
        row = SourceRow(1, {"id": "a-1", "text": text})
        fast = renderer.render(row)
        slow = json.dumps(renderer.request("a-1", row.data), ensure_ascii=False).encode()
        assert orjson.loads(fast.line) == orjson.loads(slow)


def _validate(tmp_path: Path, text: str) -> list[str]:
    p = ProjectDir(tmp_path)
    p.write("rows.jsonl", '{"id": "a", "text": "x"}\n')
    p.write("gem.yaml", text)
    try:
        project = api.load_project(cwd=tmp_path)
    except ManifestError as exc:
        return [f"{d.path}: {d.summary} | {d.hint}" for d in exc.diagnostics]
    return [f"{w.path}: {w.summary} | {w.hint}" for w in project.warnings if w.is_error]


def test_a_max_tokens_style_name_is_refused_with_gemini_s_own(tmp_path: Path) -> None:
    found = _validate(tmp_path, _manifest(SHAPES["user"], params="{max_tokens: 32, top_p: 0.9}"))
    assert any('"max_tokens"' in f and 'did you mean "maxOutputTokens"?' in f for f in found), found
    assert any('"top_p"' in f and 'did you mean "topP"?' in f for f in found), found


def test_global_with_bigquery_is_refused_at_plan_and_global_with_files_is_fine(
        tmp_path: Path) -> None:
    found = _validate(tmp_path, _manifest(
        SHAPES["user"], "  region: global\n",
        destination="{bigquery: {table: p.d.t}}"))
    assert any("global endpoint runs Gemini batch jobs from and to Cloud Storage only" in f
               and "destination" in f for f in found), found
    assert _validate(tmp_path, _manifest(SHAPES["user"], "  region: global\n")) == []


def test_a_response_schema_no_rewrite_can_mend_is_refused_at_plan(tmp_path: Path) -> None:
    deep: dict[str, Any] = {"type": "string"}
    for _ in range(16):
        deep = {"type": "object", "properties": {"x": deep}}
    schema = {"type": "object", "properties": {"No Vague Claims": {"type": "string"}, "d": deep}}
    found = _validate(tmp_path, _manifest(SHAPES["user"], "  response:\n    format: json\n"
                                          f"    schema: {json.dumps(schema)}\n"))
    assert any("`No Vague Claims` is no name the batch importer takes" in f
               and f.startswith("spec.response.schema.properties.No Vague Claims") for f in found), found
    assert any("nested 16 objects deep" in f for f in found), found


def _out(response: Any = None, status: str = "", custom_id: Any = "br-r1") -> dict[str, Any]:
    row = {"status": status, "processed_time": "2026-12-03T10:00:00.000+00:00",
           "request": {"contents": []}, "custom_id": custom_id}
    if response is not None:
        row["response"] = response
    return row


def test_thought_parts_are_kept_out_of_the_answer_and_their_tokens_counted() -> None:
    parsed = parse_line(_out({"candidates": [{"content": {"role": "model", "parts": [
        {"text": "Let me think...", "thought": True},
        {"text": "42", "thoughtSignature": "AY89"}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 43, "candidatesTokenCount": 708,
                          "thoughtsTokenCount": 1256, "cachedContentTokenCount": 10}}),
        Family.GEMINI)
    assert parsed.ok and parsed.custom_id == "r1" and parsed.output == "42"
    assert parsed.usage == {"input_tokens": 43, "output_tokens": 708 + 1256,
                            "thoughts_tokens": 1256, "cached_tokens": 10}


def test_a_bad_request_status_is_the_row_s_and_a_429_is_not() -> None:
    body = {"error": {"code": 400, "message": "Please use a valid role: user, model.",
                      "status": "INVALID_ARGUMENT"}}
    parsed = parse_line(_out(status="Bad Request: " + json.dumps(body)), Family.GEMINI)
    assert not parsed.ok and "valid role" in (parsed.error or "")
    assert fault_of(parsed.code, parsed.error or "") is Fault.ROW
    busy = {"error": {"code": 429, "message": "Resource exhausted", "status": "RESOURCE_EXHAUSTED"}}
    parsed = parse_line(_out(status="Too Many Requests: " + json.dumps(busy)), Family.GEMINI)
    assert fault_of(parsed.code, parsed.error or "") is Fault.INFRA


@pytest.mark.parametrize(("response", "words"), [
    ({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 5}},
     "the prompt was blocked, promptFeedback.blockReason SAFETY"),
    ({"candidates": [{"finishReason": "SAFETY"}]}, "finishReason SAFETY: a safety filter"),
    ({"candidates": [{"content": {"parts": [{"text": ""}]}, "finishReason": "MAX_TOKENS"}]},
     "finishReason MAX_TOKENS: the answer reached maxOutputTokens"),
])
def test_blocked_prompts_and_empty_answers_are_the_row_s_said_plainly(
        response: dict[str, Any], words: str) -> None:
    parsed = parse_line(_out(response), Family.GEMINI)
    assert not parsed.ok and words in (parsed.error or ""), parsed.error
    assert fault_of(parsed.code, parsed.error or "") is Fault.ROW


def test_an_id_the_importer_retyped_and_a_bigquery_row_are_read() -> None:
    response = {"candidates": [{"content": {"parts": [{"text": "ok"}]}, "finishReason": "STOP"}]}
    assert parse_line(_out(response, custom_id=123), Family.GEMINI).custom_id == "123"
    row = {**_out(), "custom_id": "br-r2", "response": json.dumps(response)}  # BigQuery: JSON text
    parsed = parse_line(row, Family.GEMINI)
    assert parsed.ok and parsed.custom_id == "r2" and parsed.output == "ok"


def test_a_gemini_manifest_runs_offline_with_echo(run, project_dir: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    project_dir.write("rows.jsonl", '{"id": "000001", "text": "one"}\n{"id": "b", "text": "two"}\n')
    (project_dir.root / "triage.yaml").unlink()
    project_dir.write("gem.yaml", _manifest(SHAPES["system"]))
    run("apply", "--auto-approve", "--wait", "--poll-interval", "0.1", "--timeout", "60")
    rows = {r["custom_id"]: r for r in map(json.loads, (
        project_dir.root / "out.jsonl").read_text().splitlines())}
    assert rows["000001"]["output"] == "one" and rows["b"]["status"] == "succeeded"
    assert "up to date" in run("plan")


def test_a_local_model_serves_a_gemini_manifest_through_an_openai_endpoint(
        project_dir: ProjectDir) -> None:
    """The same manifest offline: the Gemini request asked of an OpenAI-compatible endpoint (a
    local model's), its answer written as Vertex writes a Gemini row; a 400 is the row's."""
    from tests.stub_endpoint import StubServer
    from tests.test_failures import WAIT, batchrun

    (project_dir.root / "triage.yaml").unlink()
    project_dir.write("rows.jsonl", '{"id": "a", "text": "one"}\n{"id": "b", "text": "REFUSE"}\n')
    project_dir.write("gem.yaml", _manifest(SHAPES["system"]) + "  max_attempts: 1\n")
    stub = StubServer().start()
    try:
        project_dir.write("batchrun.yaml", f"""\
            backend: local
            local:
              models:
                "google/*": {{type: openai, base_url: "{stub.url}/v1", model: local-model}}
            """)
        done = batchrun(project_dir.root, *WAIT)
        assert done.returncode == 5, done.stdout + done.stderr  # a row failed: exit 5
        (request,) = [json.loads(r["body"]) for r in stub.requests() if "one" in r["body"]]
    finally:
        stub.stop()
    assert request["model"] == "local-model" and request["max_tokens"] == 32
    assert request["messages"] == [{"role": "system", "content": "Be brief."},
                                   {"role": "user", "content": "one"}]
    rows = {r["custom_id"]: r for r in map(json.loads, (
        project_dir.root / "out.jsonl").read_text().splitlines())}
    assert rows["a"]["output"] == "ONE" and rows["a"]["usage"]["output_tokens"] == 2
    assert rows["b"]["status"] == "failed" and "this row is refused" in rows["b"]["error"]


def test_ready_made_rows_that_type_a_key_two_ways_are_refused_at_plan(tmp_path: Path) -> None:
    rows = ('{"id": "a", "request": {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}], '
            '"generationConfig": {"temperature": 0.5}}}\n'
            '{"id": "b", "request": {"contents": [{"role": "user", "parts": [{"text": "Yo"}]}], '
            '"generationConfig": {"temperature": "0.5"}}}\n')
    with pytest.raises(RenderError) as info:
        _render(tmp_path, _manifest("{}", source="{file: rows.jsonl, id: id, format: requests}"),
                rows)
    text = " ".join(d.summary for d in info.value.diagnostics)
    assert "row 2" in text and "request.generationConfig.temperature is a string here but a " \
                                "number in row 1" in text, text


@pytest.mark.parametrize(("model", "expected"), [
    ("google/gemini-embedding-001", {"key": "br-000042", "request": {
        "content": {"parts": [{"text": "Hi there"}]},
        "embed_content_config": {"output_dimensionality": 8, "task_type": "RETRIEVAL_DOCUMENT"}}}),
    ("google/text-embedding-005", {"content": "Hi there", "custom_id": "br-000042",
                                   "task_type": "RETRIEVAL_DOCUMENT"}),
])
def test_embedding_rows_render_in_each_model_s_own_format(
        tmp_path: Path, model: str, expected: dict[str, Any]) -> None:
    params = "{output_dimensionality: 8, task_type: RETRIEVAL_DOCUMENT}" if "gemini" in model \
        else "{task_type: RETRIEVAL_DOCUMENT}"
    (line,) = _render(tmp_path, _manifest('{input: "{{ text }}"}', params=params, model=model)
                      .replace("spec:\n", "spec:\n  task: embeddings\n"))
    assert orjson.loads(line) == expected


@pytest.mark.parametrize("model", ["google/gemini-embedding-001", "google/text-embedding-005"])
def test_gemini_embeddings_run_offline_with_echo(
        run, project_dir: ProjectDir, model: str) -> None:  # type: ignore[no-untyped-def]
    project_dir.write("rows.jsonl", '{"id": "000001", "text": "one"}\n{"id": "b", "text": "two"}\n')
    (project_dir.root / "triage.yaml").unlink()
    project_dir.write("gem.yaml", _manifest('{input: "{{ text }}"}', params="{}", model=model)
                      .replace("spec:\n", "spec:\n  task: embeddings\n"))
    run("apply", "--auto-approve", "--wait", "--poll-interval", "0.1", "--timeout", "60")
    rows = {r["custom_id"]: r for r in map(json.loads, (
        project_dir.root / "out.jsonl").read_text().splitlines())}
    assert sorted(rows) == ["000001", "b"] and all(r["status"] == "succeeded" for r in rows.values())
    assert len(rows["b"]["output"]) == 8 and rows["b"]["usage"]["input_tokens"] == 1
    assert "up to date" in run("plan")


def test_embedding_output_rows_of_both_kinds_are_read() -> None:
    new = {"key": "br-r1", "request": {}, "status": "",
           "response": {"embedding": {"values": [0.5, -0.5]}, "usageMetadata": {"promptTokenCount": 3}}}
    old = {"instance": {"content": "x", "custom_id": "br-r2"}, "status": "", "predictions": [
        {"embeddings": {"statistics": {"token_count": 8, "truncated": False}, "values": [1, 2]}}]}
    failed = {"instance": {"content": "", "custom_id": "br-r3"}, "predictions": [],
              "status": "Bad Request: " + json.dumps({"error": {"code": 400, "message": "empty"}})}
    one, two, three = (parse_line(r, Family.GEMINI_EMBEDDINGS) for r in (new, old, failed))
    assert (one.custom_id, one.output, one.usage["input_tokens"]) == ("r1", [0.5, -0.5], 3)
    assert (two.custom_id, two.output, two.usage["input_tokens"]) == ("r2", [1.0, 2.0], 8)
    assert three.custom_id == "r3" and not three.ok and "empty" in (three.error or "")


# --- red-team of the first Gemini change ---------------------------------------------------------

def test_a_property_name_that_is_no_column_name_is_refused_at_plan(tmp_path: Path) -> None:
    """Red-team: `e-mail` passed validate and the job failed at import (code 3), blocked."""
    found = _validate(tmp_path, _manifest(SHAPES["user"], "  response:\n    format: json\n"
                                          "    schema: {type: object, properties: "
                                          "{e-mail: {type: string}, 2nd: {type: string}}}\n"))
    assert any("`e-mail` is no name the batch importer takes" in f for f in found), found
    assert any("`2nd` is no name" in f for f in found), found


def test_a_key_an_object_in_one_branch_and_a_value_in_another_is_refused_at_plan(
        tmp_path: Path) -> None:
    """Red-team: additionalProperties false in one anyOf branch and a schema in another failed
    the job at import ("a record in one row and not in another")."""
    schema = {"anyOf": [{"type": "object", "additionalProperties": False},
                        {"type": "object", "additionalProperties": {"type": "string"}}]}
    found = _validate(tmp_path, _manifest(SHAPES["user"], "  response:\n    format: json\n"
                                          f"    schema: {json.dumps(schema)}\n"))
    assert any("`additionalProperties` is an object in one place and not in another" in f
               for f in found), found


def test_a_schema_its_refs_would_blow_up_is_refused_at_plan_at_once(tmp_path: Path) -> None:
    """Red-team: 24 definitions each using the next twice made validate run for minutes."""
    defs = {f"d{i}": {"anyOf": [{"$ref": f"#/$defs/d{i + 1}"}, {"$ref": f"#/$defs/d{i + 1}"}]}
            for i in range(24)}
    defs["d24"] = {"type": "string"}
    schema = {"$defs": defs, "type": "object", "properties": {"a": {"$ref": "#/$defs/d0"}}}
    found = _validate(tmp_path, _manifest(SHAPES["user"], "  response:\n    format: json\n"
                                          f"    schema: {json.dumps(schema)}\n"))
    assert any("inlining its $refs makes it more than" in f and "flatten it" in f
               for f in found), found


def test_a_column_named_row_never_stands_for_the_whole_row(tmp_path: Path) -> None:
    """Red-team: `{{ row }}` rendered the column "row" on the fast path and the whole row on the
    template path: one row, two requests (a re-send when a template moved between them)."""
    fast = _render(tmp_path, _manifest('{user: "{{ row }}"}'), '{"id": "1", "row": "mine"}\n')
    slow = _render(tmp_path, _manifest('{user: "{{ row | string }}"}'),
                   '{"id": "1", "row": "mine"}\n')
    assert fast == slow
    assert "{'id': '1', 'row': 'mine'}" in orjson.loads(fast[0])["request"]["contents"][0][
        "parts"][0]["text"]


def test_an_odd_usage_block_neither_fails_the_answer_nor_loses_its_id() -> None:
    """Red-team: usageMetadata counts that are not numbers made the row a failure filed under
    "br-7", an id no row has: row 7 looked unanswered and would be sent again."""
    parsed = parse_line(b'{"custom_id":"br-7","status":"","response":{"candidates":[{"content":'
                        b'{"parts":[{"text":"hi"}]}}],"usageMetadata":{"promptTokenCount":"abc"'
                        b',"candidatesTokenCount":[1]}}}', Family.GEMINI)
    assert parsed.ok and parsed.custom_id == "7" and parsed.output == "hi"
    broken = parse_line({"custom_id": "br-8", "status": "", "response": {"candidates": [
        {"content": {"parts": "not a list"}}]}}, Family.GEMINI)
    assert broken.custom_id == "8"


def test_an_answer_a_filter_stopped_is_the_row_s_failure_even_with_text() -> None:
    """Red-team: finishReason SAFETY with some text was stored as succeeded, never retried."""
    parsed = parse_line(_out({"candidates": [{"content": {"parts": [{"text": "partial"}]},
                                              "finishReason": "SAFETY"}]}), Family.GEMINI)
    assert not parsed.ok and "finishReason SAFETY" in (parsed.error or "")
    assert "7 characters came before it stopped" in (parsed.error or "")
    assert fault_of(parsed.code, parsed.error or "") is Fault.ROW


def test_a_requests_row_error_is_said_as_itself(tmp_path: Path) -> None:
    """Red-team: a ready-made row's guard error read "template failed on this row: RowError"."""
    rows = '{"id": "a", "request": {"contents": [], "tools": [{"google_search": {}}]}}\n'
    with pytest.raises(RenderError) as info:
        _render(tmp_path, _manifest("{}", source="{file: rows.jsonl, id: id, format: requests}"),
                rows)
    text = " ".join(d.summary for d in info.value.diagnostics)
    assert "template failed" not in text and "an empty object {}" in text, text


def test_region_global_from_the_project_is_fine_for_gemini_and_refused_for_claude(
        tmp_path: Path) -> None:
    """Red-team: `region: global` in batchrun.yaml was refused for a Gemini-only project."""
    p = ProjectDir(tmp_path)
    p.write("batchrun.yaml", "backend: local\nregion: global\n")
    assert _validate(tmp_path, _manifest(SHAPES["user"])) == []
    claude = _manifest('{user: "{{ text }}"}', params="{max_tokens: 8}",
                       model="anthropic/claude-haiku-4-5@20251001")
    found = _validate(tmp_path, claude)
    assert any("has it from the project's region" in f for f in found), found


def test_the_global_endpoint_has_no_region_in_its_host() -> None:
    from runner.backends.vertex.rest import host_for

    assert host_for("global") == "https://aiplatform.googleapis.com"
    assert host_for("us") == "https://aiplatform.us.rep.googleapis.com"
    assert host_for("europe-west4") == "https://europe-west4-aiplatform.googleapis.com"


def test_gemini_jobs_are_cut_at_200k_rows_whatever_the_quota_says(tmp_path: Path) -> None:
    from runner.planning.shards import Sharder

    p = ProjectDir(tmp_path)
    p.write("batchrun.yaml", "backend: local\nquota: {max_rows_per_job: 500000}\n")
    p.write("rows.jsonl", "")
    p.write("gem.yaml", _manifest(SHAPES["user"]))
    project = api.load_project(cwd=tmp_path)
    gemini, other = Sharder(project.settings, Family.GEMINI), Sharder(project.settings)
    assert (gemini.max_rows, other.max_rows) == (200_000, 500_000)
    assert Sharder(project.settings, Family.GEMINI_EMBEDDINGS).max_rows == 500_000


def test_only_gemini_lines_of_google_take_gemini_formats() -> None:
    from runner.models import catalog
    from runner.spec import ModelRef, Task

    assert catalog.family_of(ModelRef("google", "gemini-3.8-flash"), Task.CHAT) is Family.GEMINI
    assert catalog.family_of(ModelRef("google", "text-embedding-005"),
                             Task.EMBEDDINGS) is Family.GEMINI_EMBEDDINGS
    assert catalog.family_of(ModelRef("google", "gemma-3-27b-it-maas"),
                             Task.CHAT) is Family.OPENAI_CHAT

"""Import guards (issue 23): requests Vertex's batch importer fails as a whole job ("Failed to import
data", code 3, before any row runs) are refused at plan, located, with the fix — before anything is
staged: `$defs`/`$schema` keys, empty `{}` objects, nesting deeper than 15, one schema key a list in
one place and not in another. An ordinary shape that varies (Claude's `content`, a string or a
list) is left alone."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runner import api
from runner.rendering.importguard import dotted, parameter_problems, row_problems
from tests.conftest import ProjectDir
from tests.fakes import FakeBackend


def paths(found: Any) -> list[str]:
    return [dotted(path) for path, _, _ in found]


def nested(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


TOOL = {"name": "lookup", "description": "find a thing"}


@pytest.mark.parametrize(("parameters", "where", "fix"), [
    ({"tools": [{**TOOL, "input_schema": {"$schema": "https://json-schema.org/draft/2020-12",
                                          "type": "object", "properties": {"q": {"type": "string"}}}}]},
     "tools[0].input_schema.$schema", "drop $schema"),
    ({"tools": [{**TOOL, "input_schema": {"type": "object", "$defs": {"x": {"type": "string"}},
                                          "properties": {"q": {"$ref": "#/$defs/x"}}}}]},
     "tools[0].input_schema.$defs", "inline $defs/$ref"),
    ({"metadata": {}}, "metadata", "remove it"),
    ({"tools": [{**TOOL, "input_schema": {"type": "object", "properties": {}}}]},
     "tools[0].input_schema.properties", "remove it"),
    # request (1), tools[0] (2), input_schema (3), then two levels a wrap: the 16th is refused
    ({"tools": [{**TOOL, "input_schema": nested(8)}]},
     "tools[0].input_schema" + ".properties.a" * 6 + ".properties", "flatten"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "object", "properties": {"a": {"anyOf": [{"type": ["string", "null"]},
                                                         {"type": "string"}]}}}}}},
     "response_format.json_schema.schema.properties.a.anyOf[1].type", "one shape"),
])
def test_each_import_trigger_is_found_where_it_is(parameters: dict[str, Any], where: str,
                                                  fix: str) -> None:
    found = list(parameter_problems(parameters))
    assert paths(found)[0] == where and fix in found[0][2]


def test_ordinary_requests_pass() -> None:
    row = {"custom_id": "a1", "request": {
        "messages": [{"role": "user", "content": "hi"},
                     {"role": "assistant", "content": [{"type": "text", "text": "yes"}]}],
        "anthropic_version": "vertex-2023-10-16", "max_tokens": 5,
        "tools": [{**TOOL, "input_schema": nested(6)}], "tool_choice": {"type": "auto"}}}
    assert list(row_problems(row)) == []  # content a string here, a list there: Claude's own


def manifest(project_dir: ProjectDir, parameters: str, source: str = "rows.jsonl",
             fmt: str = "") -> None:
    prompt = "" if fmt else 'prompt: {user: "{{ text }}"}'
    project_dir.write("triage.yaml", f"""\
        apiVersion: batchrun/v1
        kind: BatchJob
        metadata: {{name: triage}}
        spec:
          model: anthropic/claude-haiku-4-5@20251001
          parameters: {parameters}
          source: {{file: {source}, id: id{fmt}}}
          {prompt}
          destination: {{file: out/triage.jsonl}}
        """)


def test_a_schema_with_defs_is_refused_at_plan_with_the_fix(project_dir: ProjectDir) -> None:
    project_dir.write("rows.jsonl", '{"id": "a1", "text": "hi"}\n')
    tools = json.dumps([{**TOOL, "input_schema": {"type": "object", "$defs": {"x": {}},
                                                  "properties": {"q": {"type": "string"}}}}])
    manifest(project_dir, "{max_tokens: 5, tools: " + tools + "}")
    fake = FakeBackend()
    with pytest.raises(api.BatchrunError) as info:
        api.plan(api.load_project(cwd=project_dir.root), backend=fake)
    text = str(info.value) + " ".join(f"{d.path} {d.hint}" for d in info.value.diagnostics)
    assert "spec.parameters.tools[0].input_schema.$defs" in text and "inline $defs" in text
    assert not fake.staged and not fake.jobs  # nothing staged, nothing created


def test_a_request_row_with_an_empty_object_is_a_row_error_at_plan(
        project_dir: ProjectDir) -> None:
    rows = [{"id": "a1", "request": {"messages": [{"role": "user", "content": "hi"}],
                                     "anthropic_version": "vertex-2023-10-16", "max_tokens": 5}},
            {"id": "a2", "request": {"messages": [{"role": "user", "content": "hi"}],
                                     "anthropic_version": "vertex-2023-10-16", "max_tokens": 5,
                                     "metadata": {}}}]
    project_dir.write("reqs.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    manifest(project_dir, "{max_tokens: 5}", "reqs.jsonl", ", format: requests")
    fake = FakeBackend()
    with pytest.raises(api.BatchrunError) as info:
        api.plan(api.load_project(cwd=project_dir.root), backend=fake)
    assert "row 2 (id 'a2')" in str(info.value) and "request.metadata" in str(info.value)
    assert "empty object" in str(info.value)
    assert not fake.staged and not fake.jobs

"""Rendering: each request family byte-for-byte against the seed rows, and every bad-row class golden."""

from __future__ import annotations

import pytest

from runner import api
from runner.errors import RenderError
from runner.views import text as display
from tests.conftest import ProjectDir

SEED_CLAUDE = (b'{"custom_id": "request-1", "request": {"messages": [{"role": "user", "content": '
               b'"Hello!"}], "anthropic_version": "vertex-2023-10-16", "max_tokens": 50}}')
SEED_CHAT = (b'{"custom_id": "test-request-0", "method": "POST", "url": "/v1/chat/completions", '
             b'"body": {"model": "meta/llama-4-maverick-17b-128e-instruct-maas", "messages": [{"role": "user", '
             b'"content": "Give me a recipe for banana bread"}], "max_tokens": 1000}}')
SEED_EMBED = (b'{"custom_id": "test-request-0", "method": "POST", "url": "/v1/embeddings", '
              b'"body": {"model": "intfloat/multilingual-e5-small-maas", "input": "Hello World"}}')


def manifest(model: str, prompt: str, params: str = "", task: str = "") -> str:
    return f"""\
apiVersion: batchrun/v1
kind: BatchJob
metadata: {{name: seed}}
spec:
  model: {model}
  {task}
  {params}
  source: {{file: rows.jsonl, id: id}}
  prompt: {prompt}
  destination: {{file: out.jsonl}}
"""


@pytest.mark.parametrize(("model", "prompt", "params", "task", "row", "seed"), [
    ("anthropic/claude-haiku-4-5@20251001", '{user: "{{ text }}"}', "parameters: {max_tokens: 50}",
     "", '{"id": "request-1", "text": "Hello!"}', SEED_CLAUDE),
    ("meta/llama-4-maverick-17b-128e-instruct-maas", '{user: "{{ text }}"}', "parameters: {max_tokens: 1000}",
     "", '{"id": "test-request-0", "text": "Give me a recipe for banana bread"}', SEED_CHAT),
    ("intfloat/multilingual-e5-small-maas", '{input: "{{ text }}"}', "", "task: embeddings",
     '{"id": "test-request-0", "text": "Hello World"}', SEED_EMBED),
])
def test_request_families_match_the_seed_rows_byte_for_byte(
        tmp_path, model: str, prompt: str, params: str, task: str, row: str, seed: bytes) -> None:  # type: ignore[no-untyped-def]
    p = ProjectDir(tmp_path)
    p.write("rows.jsonl", row + "\n")
    p.write("seed.yaml", manifest(model, prompt, params, task))
    assert list(api.render(api.load_project(cwd=tmp_path), "seed")) == [seed]


def test_claude_system_prompt_and_few_shot(tmp_path) -> None:  # type: ignore[no-untyped-def]
    p = ProjectDir(tmp_path)
    p.write("rows.jsonl", '{"id": 7, "text": "Hi"}\n')
    p.write("seed.yaml", manifest(
        "anthropic/claude-sonnet-4-5@20250929",
        '{system: "Be brief.", examples: [{user: "Q", assistant: "A"}], user: "{{ text }}"}',
        "parameters: {max_tokens: 5, temperature: 0}"))
    (line,) = api.render(api.load_project(cwd=tmp_path), "seed")
    assert line == (b'{"custom_id": "7", "request": {"messages": [{"role": "user", "content": "Q"}, '
                    b'{"role": "assistant", "content": "A"}, {"role": "user", "content": "Hi"}], '
                    b'"anthropic_version": "vertex-2023-10-16", "max_tokens": 5, "system": '
                    b'"Be brief.", "temperature": 0}}')


def test_bad_rows_are_named_by_row_and_id(tmp_path, golden) -> None:  # type: ignore[no-untyped-def]
    p = ProjectDir(tmp_path)
    p.write("batchrun.yaml", "quota: {max_request_bytes: 300}\n")
    rows = [b'{"id": "a", "text": "fine"}', b'{"id": "b"}', b'{"id": null, "text": "x"}',
            b'{"id": "a", "text": "again"}', b'{"id": "c", "text": "caf\xe9"}',
            b'{"id": "d", "text": "' + b"x" * 250 + b'"}', b'not json', b'[1, 2]',
            b'{"id": 1.5, "text": "float id"}',
            b'{"id": "e", "text": "' + b"x" * 400 + b'"}']  # over the limit as a row: not parsed
    (tmp_path / "rows.jsonl").write_bytes(b"\n".join(rows) + b"\n")
    p.write("seed.yaml", manifest("meta/llama-4-maverick-17b-128e-instruct-maas", '{user: "{{ text }}"}'))
    with pytest.raises(RenderError) as info:
        list(api.render(api.load_project(cwd=tmp_path), "seed"))
    golden("render_row_errors.txt", display.diagnostics_text(info.value.diagnostics))


def test_sandbox_blocks_attribute_escapes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    p = ProjectDir(tmp_path)
    p.write("rows.jsonl", '{"id": "a", "text": "x"}\n')
    p.write("seed.yaml", manifest("meta/llama-4-maverick-17b-128e-instruct-maas",
                                  "{user: \"{{ ''.__class__.__mro__ }}\"}"))
    with pytest.raises(RenderError, match="template sandbox refused"):
        list(api.render(api.load_project(cwd=tmp_path), "seed"))


def test_csv_with_bom_and_crlf(tmp_path) -> None:  # type: ignore[no-untyped-def]
    p = ProjectDir(tmp_path)
    (tmp_path / "rows.csv").write_bytes(b"\xef\xbb\xbfid,text\r\n1,one\r\n2,\"two, quoted\"\r\n")
    p.write("seed.yaml", manifest("meta/llama-4-maverick-17b-128e-instruct-maas", '{user: "{{ text }}"}')
            .replace("rows.jsonl", "rows.csv"))
    lines = list(api.render(api.load_project(cwd=tmp_path), "seed"))
    assert [b'"content": "one"' in lines[0], b'"content": "two, quoted"' in lines[1]] == [True, True]


def test_a_value_of_superscript_digits_renders(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """'¹'.isdigit() is true but int('¹') fails: the sandbox's number check read it as a width
    (found by test_properties' hypothesis run)."""
    p = ProjectDir(tmp_path)
    p.write("rows.jsonl", '{"id": "a", "text": "\\u00b9\\u00b2"}\n')
    p.write("seed.yaml", manifest("meta/llama-4-maverick-17b-128e-instruct-maas",
                                  '{user: "{{ text | upper }} {{ text.center(3) }}"}'))
    (line,) = api.render(api.load_project(cwd=tmp_path), "seed")
    assert '"content": "\u00b9\u00b2  \u00b9\u00b2"' in line.decode()

"""The fast path (templates that only substitute variables) writes exactly the bytes of the
sandboxed Jinja path, for every family; templates with logic keep using Jinja."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from runner.models import catalog
from runner.rendering.row import Renderer, dumps
from runner.rows.records import SourceRow
from runner.spec import (
    DestinationKind,
    DestinationSpec,
    Manifest,
    PromptSpec,
    SourceKind,
    SourceSpec,
    Task,
    Template,
)

literal = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="{}%#"),
                  max_size=12)
names = st.sampled_from(["a", "b", "c"])
templates = st.lists(st.one_of(literal, names.map(lambda n: "{{ " + n + " }}")), min_size=1,
                     max_size=5).map("".join)
values = st.one_of(st.text(st.characters(blacklist_categories=("Cs",)), max_size=20),
                   st.integers(), st.none(), st.floats(allow_nan=False), st.booleans())

MODELS = {"claude": "anthropic/claude-haiku-4-5@20251001",
          "chat": "meta/llama-4-maverick-17b-128e-instruct-maas",
          "embeddings": "intfloat/multilingual-e5-small-maas"}


def manifest(kind: str, system: str, user: str, example: str) -> Manifest:
    model = catalog.parse_model(MODELS[kind])
    assert model is not None
    task = Task.EMBEDDINGS if kind == "embeddings" else Task.CHAT
    prompt = (PromptSpec(input=Template(user, "input")) if kind == "embeddings" else
              PromptSpec(system=Template(system, "system"), user=Template(user, "user"),
                         examples=((Template(example, "u"), Template("ok " + example, "a")),)))
    return Manifest(name="m", file=Path("m.yaml"), line=1, model=model, task=task,
                    family=catalog.family_of(model, task),
                    parameters={"max_tokens": 5, "temperature": 0.5},
                    source=SourceSpec(SourceKind.FILE, "x.jsonl", "jsonl", "id"), prompt=prompt,
                    destination=DestinationSpec(DestinationKind.FILE, "out.jsonl", "out.jsonl"))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(MODELS)), templates, templates, templates,
       st.fixed_dictionaries({"a": values, "b": values, "c": values}),
       st.one_of(st.from_regex(r"[A-Za-z0-9_-]{1,10}", fullmatch=True), st.integers(0, 10**9)))
def test_fast_path_bytes_equal_jinja(kind: str, system: str, user: str, example: str,
                                     data: dict[str, Any], custom_id: Any) -> None:
    renderer = Renderer(manifest(kind, system, user, example), max_request_bytes=10**6)
    assert renderer._fast is not None  # these templates only substitute variables
    row = SourceRow(1, {**data, "id": custom_id})
    fast = renderer.render(row)
    assert fast.line == dumps(renderer.request(str(custom_id), row.data))


def test_templates_with_logic_use_jinja() -> None:
    renderer = Renderer(manifest("chat", "{% if a %}yes{% endif %}", "{{ a | upper }}", "x"),
                        max_request_bytes=10**6)
    assert renderer._fast is None
    line = renderer.render(SourceRow(1, {"id": "1", "a": "hi"})).line
    assert b'"content": "yes"' in line and b'"content": "HI"' in line

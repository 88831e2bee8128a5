"""Ids that survive a loader (issue 23): Vertex's importer guesses JSON types, so "000123" may come
back as 123, "true" as true. An answer whose id came back coerced is matched to the one staged row
it can only be; nothing is sent twice, and the result keeps the real id."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runner import api
from runner.answers.collect import Tally, result_rows
from runner.backends.base import IndexEntry
from runner.models import catalog
from runner.rows.loaderids import loader_key
from runner.spec import (
    DestinationKind,
    DestinationSpec,
    Family,
    Manifest,
    PromptSpec,
    SourceKind,
    SourceSpec,
    Task,
    Template,
)
from tests import crashkit
from tests.vertex_env import VertexWorld


def manifest() -> Manifest:
    model = catalog.parse_model("anthropic/claude-haiku-4-5@20251001")
    assert model is not None
    return Manifest(name="m", file=Path("m.yaml"), line=1, model=model, task=Task.CHAT,
                    family=Family.CLAUDE, parameters={"max_tokens": 5},
                    source=SourceSpec(SourceKind.FILE, "x.jsonl", "jsonl", "id"),
                    prompt=PromptSpec(user=Template("{{ t }}", "user")),
                    destination=DestinationSpec(DestinationKind.FILE, "out.jsonl", "out.jsonl"))


def answer(custom_id: Any) -> bytes:
    return json.dumps({"custom_id": custom_id, "status": "", "response": {
        "type": "message", "content": [{"type": "text", "text": f"answer {custom_id}"}]}}).encode()


def collect(staged: list[str], returned: list[Any]) -> tuple[dict[str, str], Tally]:
    tally = Tally()
    rows = result_rows(manifest(), job_name="j", job_spec_hash="s", finished_at="t",
                       index=[IndexEntry(custom_id=c, request_hash="h" + c, passthrough={})
                              for c in staged],
                       output=[answer(r) for r in returned], tally=tally)
    return {r["custom_id"]: r["output"] for r in rows}, tally


@pytest.mark.parametrize(("staged", "returned"), [
    ("000123", 123), ("1e5", 100000.0), ("1e5", 100000), ("true", True), ("FALSE", False),
    ("007", "7"), ("2026-01-01", "2026-01-01T00:00:00Z"), ("-0042", -42),
])
def test_a_coerced_id_is_matched_back_to_its_staged_row(staged: str, returned: Any) -> None:
    got, tally = collect(["a1", staged, "b2"], ["a1", returned, "b2"])
    assert set(got) == {"a1", staged, "b2"} and got[staged] == f"answer {returned}"
    assert tally.unreadable == 0 and tally.to_do_again == 0


def test_an_ambiguous_coerced_id_is_matched_to_nothing() -> None:
    got, tally = collect(["000123", "0123", "x"], [123, "x"])
    assert set(got) == {"x"}  # 123 could be either: both stay to do, neither is mislabelled
    assert tally.unreadable == 1 and tally.to_do_again == 2


def test_an_id_answered_already_takes_no_second_coerced_line() -> None:
    got, tally = collect(["000123"], [123, 123])
    assert set(got) == {"000123"} and tally.unreadable == 1


def test_loader_keys() -> None:
    assert loader_key("000123") == loader_key("123") == loader_key("123.0")
    assert loader_key("true") == loader_key("True")
    assert loader_key("a1") is None and loader_key("h" + "0" * 40) is None
    assert loader_key("nan") is None and loader_key("Infinity") is None


def test_000123_round_trips_with_its_answer_once_when_the_importer_coerces_ids(
        vertex: VertexWorld) -> None:
    ids = ["000123", "1e5", "true", "a1"]
    vertex.p.write("rows.jsonl", "".join(json.dumps({"id": i, "text": f"row {i}"}) + "\n"
                                         for i in ids))
    vertex.p.write("m.yaml", crashkit.MANIFEST)
    vertex.faults(coerce_ids=True)
    final = vertex.converge(timeout=20)
    assert final.manifest("m").rows.done == 4 and not final.has_changes
    assert vertex.sent_ids() == sorted(ids)  # each row executed exactly once
    assert all(isinstance(line["custom_id"], int | float | bool) for line in _lines(vertex)
               if line["custom_id"] != "a1")  # the fake did coerce them
    results = {r["custom_id"]: r for r in api.results(vertex.project(), "m")}
    assert sorted(results) == sorted(ids) and all(r["status"] == "succeeded"
                                                  for r in results.values())
    assert "row 000123" in results["000123"]["output"]
    api.apply(vertex.project())
    assert vertex.sent_ids() == sorted(ids)  # the next apply pays for nothing again


def _lines(vertex: VertexWorld) -> list[dict[str, Any]]:
    blobs = [b for b in vertex.gcs.list_blobs(vertex.bucket) if b.name.endswith(".jsonl")
             and "/prediction-model-" in b.name]
    return [json.loads(line) for b in blobs for line in b.download_as_text().splitlines()]

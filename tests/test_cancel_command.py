"""Issue 21: `batchrun cancel NAME` cancels the manifest's own jobs, of its current and older
specs, and names each; a running preview is left alone (and said so) unless --preview is given.
Counted at the fake Vertex server."""

from __future__ import annotations

import requests

from runner import api
from tests.vertex_env import VertexWorld

MANIFEST = """\
apiVersion: batchrun/v1
kind: BatchJob
metadata: {name: m}
spec:
  model: anthropic/claude-haiku-4-5@20251001
  parameters: {max_tokens: 10}
  source: {file: rows.jsonl, id: id}
  prompt: {user: "PROMPT"}
  destination: {file: out/m.jsonl}
"""


def rows(count: int) -> str:
    return "".join(f'{{"id": "a{i}", "text": "row {i}"}}\n' for i in range(1, count + 1))


def cancels(vertex: VertexWorld) -> list[str]:
    return list(requests.get(f"{vertex.vertex}/_fake/requests", timeout=10).json()["cancels"])


def test_cancel_leaves_a_running_preview_unless_asked(vertex: VertexWorld, run) -> None:  # type: ignore[no-untyped-def]
    vertex.p.write("rows.jsonl", rows(4))
    vertex.p.write("m.yaml", MANIFEST.replace("PROMPT", "{{ text }}"))
    vertex.converge()
    vertex.faults(pending_seconds=3600)  # from here on, every job waits
    vertex.p.write("m.yaml", MANIFEST.replace("PROMPT", "Say: {{ text }}"))  # a pull request
    preview = api.preview(vertex.project(), "m", 2, timeout=0)
    assert preview.state.value == "running" and len(preview.jobs) == 1
    vertex.p.write("m.yaml", MANIFEST.replace("PROMPT", "{{ text }}"))  # main, meanwhile
    vertex.p.write("rows.jsonl", rows(6))
    api.apply(vertex.project())  # a job of the manifest's own spec for the two new rows
    jobs = {j["labels"].get("batchrun-preview") == "true": j["name"] for j in vertex.fake_jobs()
            if j["state"] == "JOB_STATE_PENDING"}
    own, previewed = jobs[False], jobs[True]

    out = run("cancel", "m")
    assert cancels(vertex) == [own]
    assert own in out and "pending" in out
    assert "1 preview job left running; --preview cancels it" in out
    assert previewed not in out.split("left running")[0]

    out = run("cancel", "m", "--preview")
    assert cancels(vertex) == [own, previewed]
    assert previewed in out and "preview" in out

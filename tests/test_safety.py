"""Secrets never leave the process, and a destination batchrun did not create is never overwritten."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner import api
from runner.cli import commands as cli
from runner.errors import ForeignDestinationError
from runner.redact import MASK, redact
from tests.conftest import ProjectDir
from tests.test_executors import _Stub

SECRET = "sk-test-SECRET-0123456789abcdef"
TOKEN = "ya29.a0AfB_FAKEtoken0123456789"


class _Echoing(_Stub):
    """An endpoint that answers every request with an error quoting the request's headers."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self._send(401, {"error": {"message": f"bad key, headers were: {dict(self.headers)}"}})


def scan(root: Path, *outputs: str) -> list[str]:
    """Every file under root and every output that contains a secret."""
    hits = [str(p) for p in root.rglob("*") if p.is_file()
            and (SECRET.encode() in p.read_bytes() or TOKEN.encode() in p.read_bytes())]
    hits += [o[:200] for o in outputs if SECRET in o or TOKEN in o]
    return hits


def test_no_key_in_output_logs_results_or_plan_files(
        project_dir: ProjectDir, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    from http.server import ThreadingHTTPServer

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echoing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("MY_KEY", SECRET)
    monkeypatch.chdir(project_dir.root)
    project_dir.write("batchrun.yaml", f"""\
        local:
          executor: {{type: openai, base_url: "http://127.0.0.1:{server.server_address[1]}/v1",
                      api_key_env: MY_KEY}}
        """)
    manifest = project_dir.root / "triage.yaml"
    manifest.write_text(manifest.read_text().replace("anthropic/claude-haiku-4-5@20251001",
                                                     "meta/llama-4-maverick-17b-128e-instruct-maas"))
    runner = CliRunner()
    outputs = []
    for args in (["plan", "--out", "plan.json"], ["apply", "--auto-approve", "--wait",
                                                   "--poll-interval", "0.1", "--timeout", "60"],
                 ["results", "triage", "--format", "jsonl"], ["status"], ["plan", "--json"]):
        result = runner.invoke(cli.main, args)
        outputs.append(result.stdout + result.stderr)
    server.shutdown()
    assert outputs[2].strip() == ""  # a 401 is no row's failure: nothing is booked against rows
    (blocked,) = [m["blocked"] for m in json.loads(outputs[4])["manifests"]]
    assert blocked["credentials"] and "401 Unauthorized" in blocked["error"]
    assert MASK in blocked["error"]  # the endpoint quoted the key; the plan does not
    assert scan(project_dir.root, *outputs) == []


def test_redaction_patterns() -> None:
    text = (f"Authorization: Bearer {TOKEN} key={SECRET} "
            '{"private_key": "-----BEGIN PRIVATE KEY-----\\nMIIE\\n-----END PRIVATE KEY-----"}')
    cleaned = redact(text)
    assert TOKEN not in cleaned and SECRET not in cleaned and "MIIE" not in cleaned
    assert redact("plain words stay") == "plain words stay"


def test_vertex_errors_are_redacted() -> None:
    from runner.backends.vertex.jobs import rpc_error_text

    text = rpc_error_text(401, {"error": {"message": f"token {TOKEN} rejected"}}, "")
    assert TOKEN not in text and MASK in text


def test_foreign_destination_is_never_overwritten(project_dir: ProjectDir) -> None:
    out = project_dir.root / "out" / "triage.jsonl"
    out.parent.mkdir()
    out.write_text('{"ticket_id": "T1", "label": "hand-made"}\n')
    with pytest.raises(ForeignDestinationError, match="was not written by batchrun"):
        api.plan(api.load_project(cwd=project_dir.root))
    result = CliRunner().invoke(cli.main, ["plan"], catch_exceptions=False,
                                env={"BATCHRUN_CONFIG": str(project_dir.root / "batchrun.yaml")})
    assert result.exit_code == 1
    assert "(it lacks custom_id, status, spec_hash, request_hash)" in result.stderr
    assert out.read_text() == '{"ticket_id": "T1", "label": "hand-made"}\n'  # untouched
    manifest = project_dir.root / "triage.yaml"
    manifest.write_text(manifest.read_text().replace("destination: {file: out/triage.jsonl}",
                                                     "destination: {file: out/triage.jsonl, adopt: true}"))
    # Issue 11: rows without an id or a spec cannot be a ledger, adopted or not: answers written
    # beside them were never recognised, and apply --wait paid for every row again each second.
    with pytest.raises(ForeignDestinationError, match=r"cannot adopt destination .* it lacks "
                       r"batchrun's ledger columns custom_id, status, spec_hash, request_hash"):
        api.plan(api.load_project(cwd=project_dir.root))
    assert out.read_text() == '{"ticket_id": "T1", "label": "hand-made"}\n'
    out.write_text('{"custom_id": "T1", "status": "succeeded", "spec_hash": "old", '
                   '"request_hash": "r", "output": "kept"}\n')  # a ledger from elsewhere
    api.converge(api.load_project(cwd=project_dir.root), poll_interval=0.1, timeout=60)
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert sum(1 for r in rows if r.get("status") == "succeeded") == 5
    assert len(rows) == 5  # T1's old answer was replaced by the current spec's, not duplicated


def test_a_crash_without_sidecar_is_still_ours(project_dir: ProjectDir) -> None:
    api.converge(api.load_project(cwd=project_dir.root), poll_interval=0.1, timeout=60)
    (project_dir.root / "out" / ".triage.jsonl.batchrun.json").unlink()
    plan = api.plan(api.load_project(cwd=project_dir.root))
    assert plan.manifest("triage").rows.done == 5


SHORT = "k3y"  # a key of three characters is still a key
PASSWORD = "hunter2-pw"
QUERY_TOKEN = "qtok-0a1b2c3d"


class _EchoingAll(_Stub):
    """Answers 200 with every header and the full URL it got quoted back as the model's text."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        text = f"path {self.path} headers {dict(self.headers)}"
        self._send(200, {"id": "m", "type": "message", "role": "assistant", "stop_reason": "end_turn",
                         "content": [{"type": "text", "text": text}],
                         "usage": {"input_tokens": 1, "output_tokens": 1}})


@pytest.mark.parametrize("key", [SECRET, SHORT])
def test_secrets_in_every_form_never_reach_a_file_or_the_screen(
        project_dir: ProjectDir, monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    """Issue 11: Basic auth from user:pass@ in base_url, the password itself, a token= query
    parameter, and an api_key_env value of any length: scanned for in every file batchrun wrote and
    everything it printed, --debug tracebacks included."""
    import base64
    import threading
    from http.server import ThreadingHTTPServer

    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoingAll)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("MY_KEY", key)
    monkeypatch.chdir(project_dir.root)
    port = server.server_address[1]
    project_dir.write("batchrun.yaml", f"""\
        local:
          executor: {{type: anthropic, api_key_env: MY_KEY,
                      base_url: "http://bob:{PASSWORD}@127.0.0.1:{port}/v?token={QUERY_TOKEN}"}}
        """)
    runner = CliRunner()
    outputs = []
    for args in (["plan", "--out", "plan.json"], ["apply", "--auto-approve", "--wait",
                                                   "--poll-interval", "0.1", "--timeout", "60"],
                 ["results", "triage", "--format", "jsonl"], ["results", "triage"], ["status"],
                 ["plan", "--format", "markdown"], ["plan", "--json"],
                 ["--debug", "import", "triage", f"jobs/{key}-{PASSWORD}-{QUERY_TOKEN}"]):
        result = runner.invoke(cli.main, args)
        outputs.append(result.stdout + result.stderr)
    server.shutdown()
    rows = [json.loads(x) for x in outputs[2].splitlines()]
    assert len(rows) == 5 and all(r["status"] == "succeeded" for r in rows), outputs[1]
    assert "Traceback" in outputs[-1] and MASK in outputs[-1]
    basic = base64.b64encode(f"bob:{PASSWORD}".encode()).decode()
    planted = [key, PASSWORD, QUERY_TOKEN, basic]
    written = [p for p in project_dir.root.rglob("*") if p.is_file() and p.name != "batchrun.yaml"]
    hits = [(s, str(p)) for p in written for s in planted if s.encode() in p.read_bytes()]
    hits += [(s, o[:300]) for o in outputs for s in planted if s in o]
    assert hits == []


def test_a_secret_is_masked_in_every_spelling_an_endpoint_may_echo() -> None:
    """Red-team: URL-encoded, base64, hex and JSON-escaped echoes of a key were stored as is."""
    import base64
    import json as _json
    from urllib.parse import quote

    from runner import redact as r

    key = 'Zm9v+bar/baz==q"uo\\te'
    r.remember([key])
    for spelling in (key, quote(key, safe=""), base64.b64encode(key.encode()).decode(),
                     key.encode().hex(), _json.dumps(key)[1:-1], key + "\r"):
        assert key not in redact(f"echo: {spelling} end") and MASK in redact(f"echo: {spelling}")
    assert redact("loader.construct_object(key_node, deep=True)") == \
        "loader.construct_object(key_node, deep=True)"  # code in a --debug traceback stays


def test_a_key_with_a_trailing_newline_blocks_and_is_never_shown(
        project_dir: ProjectDir, monkeypatch: pytest.MonkeyPatch) -> None:
    """Red-team: requests quoted a key ending in \\r in its error, into job.json and the plan."""
    monkeypatch.setenv("CR_KEY", "CRLFsecret99\r")
    monkeypatch.chdir(project_dir.root)
    project_dir.write("batchrun.yaml", """\
        quota: {failure_backoff: 0}
        local:
          executor: {type: anthropic, base_url: "http://127.0.0.1:9", api_key_env: CR_KEY}
        """)
    runner = CliRunner()
    outputs = [runner.invoke(cli.main, args) for args in (
        ["apply", "--auto-approve", "--wait", "--poll-interval", "0.1", "--timeout", "30"],
        ["plan", "--json"], ["status"])]
    text = "".join(o.stdout + o.stderr for o in outputs)
    assert outputs[0].exit_code == 5, text
    blocked = json.loads(outputs[1].stdout)["manifests"][0]["blocked"]
    assert blocked["credentials"] and "not a valid header value" in blocked["error"]
    files = [p.read_bytes() for p in project_dir.root.rglob("*") if p.is_file()]
    assert not any(b"CRLFsecret99" in f for f in files) and "CRLFsecret99" not in text

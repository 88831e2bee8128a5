"""Hostile endpoints (issue 22): one that trickles, one that never stops answering, one that
redirects elsewhere, and credentials in base_url's query. Each against the stub endpoint, through
the batchrun command as a user runs it; the worker is measured from /proc, the prompts counted at
the stub."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest

from runner.backends.processes import pid_alive
from tests.conftest import ProjectDir
from tests.stub_endpoint import StubServer
from tests.test_failures import WAIT, batchrun, endpoint, plan_doc, use_endpoint

__all__ = ["endpoint"]  # the fixture, shared with test_failures

KEY = "sk-test-0123456789"  # what batchrun() puts in STUB_KEY
MB = 1024 * 1024
T = TypeVar("T")


def jobs(root: Path) -> list[dict[str, Any]]:
    records = [orjson.loads(p.read_bytes()) for p in (root / ".batchrun" / "jobs").glob("*/job.json")]
    return sorted(records, key=lambda r: r["createTime"])


def seconds_taken(job: dict[str, Any]) -> float:
    def at(value: str) -> float:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()

    return at(job["endTime"]) - at(job["startTime"])


def eventually(probe: Callable[[], T | None], seconds: float, what: str) -> T:
    """Polls until `probe` gives something (not None, not empty); the bound is generous, it only
    keeps a hang finite."""
    deadline = time.monotonic() + seconds
    while not (value := probe()):
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)
    return value


def finished(root: Path) -> dict[str, Any] | None:
    records = jobs(root)
    return records[-1] if records and "endTime" in records[-1] else None


def test_a_trickling_endpoint_ends_its_job_at_the_deadline(project_dir: ProjectDir,
                                                           endpoint: StubServer) -> None:
    """Issue 22: one byte every 0.5 s kept a worker with `timeout: 3` busy for 7 minutes: the
    timeout bounded only the gap between reads."""
    use_endpoint(project_dir, endpoint.url, extra=", timeout: 3")
    endpoint.set_mode("trickle", delay=0.5)
    root = project_dir.root
    result = batchrun(root, *WAIT)
    assert result.returncode == 5, result.stdout + result.stderr
    (job,) = jobs(root)  # it may have answered and billed: blocked at once, never sent again
    assert job["state"] == "JOB_STATE_FAILED" and seconds_taken(job) <= 3 + 5
    blocked = plan_doc(root)["blocked"]
    assert isinstance(blocked, dict) and blocked["failures"] == 1
    assert "no complete answer within 3 s" in blocked["error"]
    assert max(endpoint.seen().values()) == 1


@pytest.mark.parametrize("mode", ["slow", "trickle"])
def test_cancel_ends_a_job_stuck_mid_request_at_once(project_dir: ProjectDir,
                                                     endpoint: StubServer, mode: str) -> None:
    """Issue 22: `batchrun cancel` left a job waiting on its endpoint `cancelling` for good:
    waiting for the answer's headers (slow) or in the middle of its body (trickle)."""
    use_endpoint(project_dir, endpoint.url, extra=", timeout: 600")
    endpoint.set_mode(mode, delay=300 if mode == "slow" else 0.5)
    root = project_dir.root
    assert batchrun(root, "apply", "--auto-approve").returncode == 0
    eventually(endpoint.requests, 60, "the worker's first request")
    time.sleep(0.5)  # well inside the request
    cancel = batchrun(root, "cancel", "triage")
    assert cancel.returncode == 0, cancel.stdout + cancel.stderr
    asked = time.monotonic()
    job = eventually(lambda: finished(root), 30, "the cancelled job to end")
    assert time.monotonic() - asked <= 10  # generous: the worker polls its marker every 0.25 s
    assert job["state"] == "JOB_STATE_CANCELLED"
    rows = plan_doc(root)["rows"]
    assert isinstance(rows, dict) and rows["failed"] == 0 and rows["to_do"] == 5


def _status_kb(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def test_an_endless_body_is_cut_off_and_its_rows_are_not_sent_forever(
        project_dir: ProjectDir, endpoint: StubServer) -> None:
    """Issue 22: a chunked body without end grew the worker by ~200 MB/s until MemoryError, booked
    as an infrastructure failure: the prompt was sent and paid again on every later apply."""
    use_endpoint(project_dir, endpoint.url)
    endpoint.set_mode("endless", delay=1.0)  # the stub waits 1 s before its body: the baseline
    root = project_dir.root
    assert batchrun(root, "apply", "--auto-approve").returncode == 0
    eventually(endpoint.requests, 60, "the worker's first request")
    pid = int(jobs(root)[0]["_local"]["pid"])
    baseline = _status_kb(pid, "VmRSS") or 0
    peak = baseline
    deadline = time.monotonic() + 120
    while pid_alive(pid) and time.monotonic() < deadline:
        peak = max(peak, _status_kb(pid, "VmHWM") or 0)
        if peak - baseline > 100 * 1024:  # a failure: spare the machine the rest of it
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    assert (peak - baseline) / 1024 < 100, f"the worker grew {(peak - baseline) / 1024:.0f} MB"
    assert not pid_alive(pid)
    again = batchrun(root, *WAIT)  # later applies: blocked, nothing sent
    assert again.returncode == 5, again.stdout + again.stderr
    blocked = plan_doc(root)["blocked"]
    assert isinstance(blocked, dict) and "the endpoint sent more than 16 MiB" in blocked["error"]
    assert len(jobs(root)) == 1 and max(endpoint.seen().values()) == 1


def test_a_redirect_is_refused_and_neither_key_nor_prompts_go_there(
        project_dir: ProjectDir, endpoint: StubServer) -> None:
    """Issue 22: on a 307 requests re-posted the prompts elsewhere with Anthropic's x-api-key
    (it strips only Authorization)."""
    root = project_dir.root
    with StubServer().start() as elsewhere:
        use_endpoint(project_dir, endpoint.url)
        endpoint.set_mode("redirect", target=f"{elsewhere.url}/steal?sig=stolen-sig-0123")
        result = batchrun(root, *WAIT)
        assert result.returncode == 5, result.stdout + result.stderr
        assert elsewhere.requests() == []
    sent = endpoint.requests()
    assert sent and all(r["headers"].get("x-api-key") == KEY for r in sent)  # at home, it is
    blocked = plan_doc(root)["blocked"]
    assert isinstance(blocked, dict)
    assert f"redirected to {elsewhere.url}/steal?sig=[REDACTED]" in blocked["error"]
    assert "batchrun does not follow redirects" in blocked["error"]
    files = [p for p in root.rglob("*") if p.is_file()]
    assert not [p for p in files if KEY.encode() in p.read_bytes()]


QUERY = {"pass": "PASSv4lue-0a1b", "jwt": "eyJhbGciOiJIUzI1NiJ9.e30.c2ln", "session": "SESS-9z8y"}


@pytest.mark.parametrize("failure", ["404", "unreachable"])
def test_query_values_of_base_url_are_never_shown_or_stored(
        project_dir: ProjectDir, endpoint: StubServer, failure: str) -> None:
    """Issue 22: `?pass=`, `?jwt=` and `?session=` are on no list of credential names: their values
    were in the plan, its markdown, the saved plan, `status` and job.json."""
    query = "&".join(f"{k}={v}" for k, v in QUERY.items())
    url = endpoint.url
    if failure == "unreachable":
        endpoint.stop()
    else:
        endpoint.set_mode("404")
    use_endpoint(project_dir, f"{url}/v1?{query}")
    root = project_dir.root
    outputs = [batchrun(root, *args) for args in (
        WAIT, ("plan",), ("plan", "--json"), ("plan", "--format", "markdown"),
        ("plan", "--out", "saved.plan"), ("status",))]
    assert outputs[0].returncode == 5, outputs[0].stdout + outputs[0].stderr
    if failure == "404":  # the worker still sends the real URL
        assert all(QUERY["jwt"] in r["path"] for r in endpoint.requests())
        assert "pass=[REDACTED]&jwt=[REDACTED]&session=[REDACTED]" in outputs[1].stdout
    assert (root / "saved.plan").is_file() and jobs(root)
    written = [p for p in root.rglob("*") if p.is_file() and p.name != "batchrun.yaml"]
    hits = [(v, str(p)) for p in written for v in QUERY.values() if v.encode() in p.read_bytes()]
    hits += [(v, " ".join(o.args[3:])) for o in outputs for v in QUERY.values()
             if v in o.stdout + o.stderr]
    assert hits == []


def test_a_shown_url_keeps_every_query_name_and_no_value() -> None:
    from runner.redact import MASK, masked_url, url_secrets

    url = "http://bob:pw-0a1b@127.0.0.1:8000/v1?pass=p4ss-xyz&jwt=a.b.c&flag&blank=&session=s%2B1"
    assert masked_url(url) == (f"http://127.0.0.1:8000/v1?pass={MASK}&jwt={MASK}&flag&blank"
                               f"&session={MASK}")
    assert {"p4ss-xyz", "a.b.c", "s+1", "s%2B1", "pw-0a1b"} <= set(url_secrets(url))


def test_whose_fault_a_cut_off_answer_is_and_when_it_blocks() -> None:
    """A timeout or an answer past max_response_bytes may have been billed: blocked at once, never
    an attempt of the row. A redirect was paid nothing: it waits for the streak, like a 404."""
    from datetime import UTC

    from runner.answers.fault import Fault, fault_of
    from runner.ledger.streak import FailurePolicy, JobEnd, job_failures
    from runner.rpc import Code

    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)

    def failed(code: int) -> list[JobEnd]:
        return [JobEnd("j1", "d", "failed", "2026-11-29T11:00:00Z", now, code, "x")]

    policy = FailurePolicy(max_job_failures=3, backoff=0)
    for code in (Code.OUT_OF_RANGE, Code.DEADLINE_EXCEEDED):
        assert job_failures(failed(code), policy, frozenset(), now).blocked
    assert not job_failures(failed(Code.NOT_FOUND), policy, frozenset(), now).blocked
    assert fault_of(Code.OUT_OF_RANGE, "the endpoint sent more than 16 MiB") is Fault.INFRA
    assert fault_of(None, "the endpoint sent more than 16 MiB for one request") is Fault.INFRA

"""Whose failure it is (issue 10): the one classification table, the back-off and block rules, and the
stories as a user meets them — a first job failing INTERNAL, an expired job with half its rows
written, an endpoint that is down or refuses the key, workers killed mid-job — each counted at the
executor (the fake's record, or a stub endpoint that counts the prompts it answered)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from runner import api
from runner.answers.fault import FAULT_RULES, Fault, fault_of
from runner.backends.base import JobState
from runner.ledger.streak import FailurePolicy, JobEnd, job_failures
from tests.conftest import ProjectDir
from tests.fakes import FakeBackend
from tests.stub_endpoint import StubServer

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("code", "text", "fault"), [
    (400, "Bad Request: prompt is too long", Fault.ROW),
    (422, "Unprocessable Entity: bad schema", Fault.ROW),
    (413, "Request Entity Too Large", Fault.ROW),
    (None, "answer is not JSON (unexpected character)", Fault.ROW),
    (None, "answer does not match the response schema at (root)", Fault.ROW),
    (None, "the model returned no answer (stop_reason: max_tokens)", Fault.ROW),
    (401, "Unauthorized: invalid x-api-key", Fault.AUTH),
    (403, "Forbidden", Fault.AUTH),
    (16, "", Fault.AUTH),
    (7, "", Fault.AUTH),
    (None, "Unauthorized: authentication_error", Fault.AUTH),
    (404, "Not Found: no such model", Fault.INFRA),
    (408, "Request Timeout", Fault.INFRA),
    (429, "Too Many Requests", Fault.INFRA),
    (500, "Internal Server Error", Fault.INFRA),
    (503, "Service Unavailable", Fault.INFRA),
    (529, "overloaded", Fault.INFRA),
    (13, "INTERNAL", Fault.INFRA),
    (8, "", Fault.INFRA),
    (None, "Resource exhausted (RESOURCE_EXHAUSTED)", Fault.INFRA),
    (None, "endpoint unreachable: ConnectionError", Fault.INFRA),
])
def test_whose_failure_it_is(code: int | None, text: str, fault: Fault) -> None:
    assert fault_of(code, text) is fault


def test_every_fault_rule_is_reachable() -> None:
    assert {fault_of(401), fault_of(503), fault_of(400)} == {f for _, _, f in FAULT_RULES}


def end(name: str, state: str, minute: int, digest: str = "D", code: int | None = 14,
        message: str = "503 Service Unavailable") -> JobEnd:
    at = NOW - timedelta(minutes=60 - minute)
    return JobEnd(name, digest, state, at.isoformat(), at, code, message)


POLICY = FailurePolicy(max_job_failures=3, backoff=60, backoff_max=3600, internal_delay=600)


@pytest.mark.parametrize(("jobs", "streak", "blocked", "held_minutes"), [
    ([], 0, False, None),
    ([end("a", "succeeded", 1, code=None)], 0, False, None),
    ([end("a", "failed", 59)], 1, False, 1),  # backs off a minute
    ([end("a", "failed", 50), end("b", "failed", 59)], 2, False, 2),  # doubling
    ([end(n, "failed", m) for n, m in (("a", 1), ("b", 2), ("c", 59))], 3, True, None),
    # an answer in between ends the run: only the same rows failing again count
    ([end("a", "failed", 1), end("b", "failed", 2), end("c", "succeeded", 3, code=None),
      end("d", "failed", 59)], 1, False, 1),
    # other rows (another staged input) do not add up
    ([end("a", "failed", 1, "D1"), end("b", "failed", 2, "D2"), end("c", "failed", 59, "D3")],
     1, False, 1),
    ([end("a", "expired", 59, code=None, message="")], 1, False, 1),
    ([end("a", "cancelled", 59, code=1, message="CANCELED")], 0, False, None),  # deliberate
    ([end("a", "failed", 59, code=13, message="INTERNAL")], 1, False, 10),  # Vertex: ~10 min
    ([end("a", "failed", 59, code=10, message="worker died")], 1, False, None),  # resume at once
    ([end("a", "failed", 59, code=16, message="401 Unauthorized")], 1, True, None),  # at once
])
def test_back_off_then_block(jobs: list[JobEnd], streak: int, blocked: bool,
                             held_minutes: int | None) -> None:
    result = job_failures(jobs, POLICY, frozenset(), NOW - timedelta(seconds=30))
    assert (result.streak, result.blocked) == (streak, blocked)
    if held_minutes is None:
        assert result.hold_until is None
    else:
        newest = max(jobs, key=lambda j: j.created)
        assert newest.ended is not None
        assert result.hold_until == newest.ended + timedelta(minutes=held_minutes)


def test_retry_sets_failed_jobs_aside() -> None:
    jobs = [end(n, "failed", m) for n, m in (("a", 1), ("b", 2), ("c", 59))]
    assert job_failures(jobs, POLICY, frozenset({"a", "b", "c"}), NOW).streak == 0


# --- on the in-memory backend ---------------------------------------------------------------------

def load(p: ProjectDir) -> api.Project:
    return api.load_project(cwd=p.root)


def counts(plan: api.Plan) -> tuple[int, int, int]:
    r = plan.manifest("triage").rows
    return r.done, r.to_do, r.failed


def test_internal_first_job_with_max_attempts_1_answers_every_row_after_the_hold(
        project_dir: ProjectDir) -> None:
    manifest = project_dir.root / "triage.yaml"
    manifest.write_text(manifest.read_text().replace("max_attempts: 2", "max_attempts: 1"))
    fake = FakeBackend()  # its clock is in 2026-01-01: the 600 s hold is long over
    api.apply(load(project_dir), backend=fake)
    (job,) = fake.jobs
    fake.end(job, JobState.FAILED, code=13, message="INTERNAL")
    plan = api.plan(load(project_dir), backend=fake)
    assert counts(plan) == (0, 5, 0)  # not one row failed
    api.apply(load(project_dir), plan, backend=fake)
    fake.run_all()
    final = api.converge(load(project_dir), backend=fake, poll_interval=0.01, timeout=5)
    assert counts(final) == (5, 0, 0)
    assert set(fake.sent.values()) == {1}  # each row executed once: the failed job sent none


@pytest.mark.parametrize("state", [JobState.EXPIRED, JobState.FAILED, JobState.CANCELLED])
def test_an_ended_job_keeps_what_it_answered_and_only_the_rest_is_sent_again(
        project_dir: ProjectDir, state: JobState) -> None:
    fake = FakeBackend()
    api.apply(load(project_dir), backend=fake)
    (job,) = fake.jobs
    fake.end(job, state, answered=2, code=None if state is JobState.EXPIRED else 14,
             message=None if state is JobState.EXPIRED else "UNAVAILABLE")
    plan = api.plan(load(project_dir), backend=fake)
    assert counts(plan) == (2, 3, 0)
    assert plan.manifest("triage").actions == ["collect", "create"] or plan.manifest(
        "triage").hold_until is not None
    project_dir.write("batchrun.yaml", "quota: {failure_backoff: 0}\n")
    api.apply(load(project_dir), backend=fake)
    second = [n for n in fake.jobs if n != job]
    assert [fake.jobs[n].state for n in second] == [JobState.PENDING]
    assert len(fake.staged[fake.jobs[second[0]].input_digest]) == 3  # only the unanswered rows
    fake.run_all()
    final = api.converge(load(project_dir), backend=fake, poll_interval=0.01, timeout=5)
    assert counts(final) == (5, 0, 0)
    assert set(fake.sent.values()) == {1}  # nothing paid twice
    rows = {r["custom_id"]: r for r in api.results(load(project_dir), "triage", backend=fake)}
    assert all(r["attempts"] == 1 for r in rows.values())


def test_repeated_job_failures_block_and_retry_unblocks(project_dir: ProjectDir) -> None:
    project_dir.write("batchrun.yaml", "quota: {failure_backoff: 0, max_job_failures: 2}\n")
    fake = FakeBackend()
    for _ in range(2):
        api.apply(load(project_dir), backend=fake)
        (job,) = [n for n, j in fake.jobs.items() if j.state.in_flight]
        fake.end(job, JobState.FAILED, code=14, message="503 Service Unavailable")
    plan = api.plan(load(project_dir), backend=fake)
    m = plan.manifest("triage")
    assert m.blocked is not None and m.blocked.failures == 2 and "503" in m.blocked.error
    assert counts(plan) == (0, 5, 0) and m.actions == ["collect"]  # the last job's (empty) output
    api.apply(load(project_dir), backend=fake)
    assert len(fake.created()) == 2  # blocked: nothing created
    report = api.retry(load(project_dir), "triage", backend=fake)
    assert len(report.forgiven) == 2
    assert api.plan(load(project_dir), backend=fake).manifest("triage").actions == ["create"]


def test_retry_failed_gives_rows_fresh_attempts(project_dir: ProjectDir) -> None:
    fake = FakeBackend(fail_ids=["T2"])
    final = api.converge(load(project_dir), backend=_running(fake), poll_interval=0.01, timeout=5)
    assert counts(final) == (4, 0, 1)
    assert fake.sent[("triage", "T2")] == 2  # max_attempts: 2
    report = api.retry(load(project_dir), "triage", failed=True, backend=fake)
    assert report.rows_reset == 1
    assert counts(api.plan(load(project_dir), backend=fake)) == (4, 1, 0)
    fake.fail_ids.clear()
    final = api.converge(load(project_dir), backend=_running(fake), poll_interval=0.01, timeout=5)
    assert counts(final) == (5, 0, 0) and fake.sent[("triage", "T2")] == 3


def test_status_counts_every_attempt_paid() -> None:
    from runner.answers.collect import merge, paid

    def result(status: str, job: str, at: str, tokens: int) -> dict[str, object]:
        return {"custom_id": "x", "status": status, "spec_hash": "S", "request_hash": "R",
                "job": job, "finished_at": at, "attempts": 1, "retry": None, "error": None,
                "output": None, "usage": {"input_tokens": tokens, "output_tokens": 1}}

    # an answer off the schema was paid for, then the retry answered
    first = merge(None, result("failed", "j1", "t1", 10), "S")
    second = merge(first, result("failed", "j2", "t2", 10), "S")
    answered = merge(second, result("succeeded", "j3", "t3", 10), "S")
    assert answered is not None and answered["usage"]["input_tokens"] == 10
    assert paid(answered) == {"input_tokens": 30, "output_tokens": 3}
    assert merge(answered, result("succeeded", "j3", "t3", 10), "S") is None  # a replay: no charge


class _running:
    """The FakeBackend, with every job run to completion right after apply creates it."""

    def __init__(self, fake: FakeBackend) -> None:
        self._fake = fake

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._fake, name)

    def create_job(self, request):  # type: ignore[no-untyped-def]
        job = self._fake.create_job(request)
        self._fake.run(job.name)
        return self._fake.jobs[job.name]


# --- on the local backend, through the batchrun command, against a stub endpoint -------------------

@pytest.fixture
def endpoint() -> Iterator[StubServer]:
    server = StubServer().start()
    try:
        yield server
    finally:
        server.stop()


def batchrun(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[
        str]:
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=root, text=True,
                          capture_output=True, timeout=120, check=False,
                          env={**os.environ, "STUB_KEY": "sk-test-0123456789", **(env or {})})


def use_endpoint(p: ProjectDir, url: str, extra: str = "") -> None:
    p.write("batchrun.yaml", f"""\
        backend: local
        quota: {{failure_backoff: 0, max_job_failures: 2}}
        local:
          executor: {{type: anthropic, base_url: "{url}", api_key_env: STUB_KEY, concurrency: 2,
                      retries: 1, retry_delay: 0.01{extra}}}
        """)


WAIT = ("apply", "--auto-approve", "--wait", "--poll-interval", "0.1", "--timeout", "60")


def plan_doc(root: Path) -> dict[str, object]:
    out = batchrun(root, "plan", "--json")
    manifest: dict[str, object] = json.loads(out.stdout)["manifests"][0]
    return manifest


def test_endpoint_down_blocks_without_failing_rows_and_retry_recovers(
        project_dir: ProjectDir, endpoint: StubServer) -> None:
    use_endpoint(project_dir, endpoint.url)
    endpoint.set_mode("503")
    root = project_dir.root
    down = batchrun(root, *WAIT)
    assert down.returncode == 5, down.stdout + down.stderr
    assert "blocked: triage" in down.stdout
    doc = plan_doc(root)
    assert doc["rows"] == {"total": 5, "done": 0, "in_flight": 0, "to_do": 5, "failed": 0,
                           "waiting": 0, "reshape": 0, "kept": 0}
    blocked = doc["blocked"]
    assert isinstance(blocked, dict) and blocked["failures"] == 2
    assert "503 Service Unavailable" in blocked["error"] and "Bad Request" not in blocked["error"]
    assert "! blocked since" in batchrun(root, "plan").stdout
    assert endpoint.seen() == {}  # nothing was answered, so nothing was paid
    endpoint.set_mode("ok")
    assert batchrun(root, *WAIT).returncode == 5  # still blocked until the user says so
    retry = batchrun(root, "retry", "triage")
    assert retry.returncode == 0 and "triage: unblocked. Run `batchrun apply`" in retry.stdout
    done = batchrun(root, *WAIT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Done: 5 rows answered." in done.stdout
    assert set(endpoint.seen().values()) == {1} and len(endpoint.seen()) == 5


def test_rejected_key_blocks_at_once_with_the_real_status(project_dir: ProjectDir,
                                                        endpoint: StubServer) -> None:
    use_endpoint(project_dir, endpoint.url)
    endpoint.set_mode("401")
    result = batchrun(project_dir.root, *WAIT)
    assert result.returncode == 5
    blocked = plan_doc(project_dir.root)["blocked"]
    assert isinstance(blocked, dict) and blocked["credentials"] and blocked["failures"] == 1
    assert "401 Unauthorized: credentials rejected — check api_key_env (STUB_KEY)" in blocked[
        "error"]
    text = batchrun(project_dir.root, "plan").stdout
    assert "the endpoint refused the credentials" in text and "batchrun retry triage" in text


def test_unreachable_endpoint_fails_the_job_not_the_rows(project_dir: ProjectDir,
                                                        endpoint: StubServer) -> None:
    url = endpoint.url
    endpoint.stop()  # nothing listens there now
    use_endpoint(project_dir, url)
    result = batchrun(project_dir.root, *WAIT)
    assert result.returncode == 5
    doc = plan_doc(project_dir.root)
    blocked = doc["blocked"]
    assert isinstance(blocked, dict) and "endpoint unreachable" in blocked["error"]
    assert doc["rows"]["failed"] == 0  # type: ignore[index]


def test_unset_api_key_env_is_a_validate_error(project_dir: ProjectDir) -> None:
    use_endpoint(project_dir, "http://127.0.0.1:9")
    result = subprocess.run([sys.executable, "-m", "runner", "validate"], cwd=project_dir.root,
                            text=True, capture_output=True, timeout=60, check=False,
                            env={k: v for k, v in os.environ.items() if k != "STUB_KEY"})
    assert result.returncode == 1
    assert "the environment variable STUB_KEY (api_key_env) is not set" in result.stderr


def test_workers_killed_mid_job_resend_no_more_than_was_in_flight(project_dir: ProjectDir,
                                                                 endpoint: StubServer) -> None:
    rows = "ticket_id,subject,body\n" + "".join(f"T{i},s{i},b{i}\n" for i in range(40))
    project_dir.write("tickets.csv", rows)
    use_endpoint(project_dir, endpoint.url)
    endpoint.set_mode("ok", delay=0.02)
    root = project_dir.root
    killed = batchrun(root, "apply", "--auto-approve", env={"BATCHRUN_CRASH_AT": "answered:7"})
    assert killed.returncode == 0  # apply returned; its worker dies on its 7th answer
    final = batchrun(root, *WAIT)
    assert final.returncode == 0, final.stdout + final.stderr
    seen = endpoint.seen()
    assert len(seen) == 40
    resent = sum(seen.values()) - len(seen)
    assert resent <= 2  # at most the worker's concurrency was in flight when it died
    results = [json.loads(x) for x in batchrun(root, "results", "triage", "--format",
                                                "jsonl").stdout.splitlines()]
    assert len(results) == 40 and all(r["status"] == "succeeded" for r in results)
    status = batchrun(root, "status").stdout
    assert "failed" in status  # the dead worker's job is reported as what it was


def test_results_piped_into_head_ends_quietly(project_dir: ProjectDir) -> None:
    out = project_dir.root / "out" / "triage.jsonl"
    out.parent.mkdir()
    row = {"status": "succeeded", "output": "x" * 200, "spec_hash": "S", "request_hash": "R"}
    out.write_text("".join(json.dumps({"custom_id": f"T{i}", **row}) + "\n" for i in range(3_000)))
    for fmt in ("jsonl", "csv", "table"):
        result = subprocess.run(
            ["bash", "-c", f"set -o pipefail; {sys.executable} -m runner results triage "
                           f"--format {fmt} | head -2"],
            cwd=project_dir.root, text=True, capture_output=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr
        assert result.stderr == "" and len(result.stdout.splitlines()) == 2


def test_results_mark_answers_of_an_older_spec_stale(run, project_dir: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    run(*WAIT)
    manifest = project_dir.root / "triage.yaml"
    manifest.write_text(manifest.read_text().replace("Classify the ticket.", "Sort the ticket."))
    out = run("results", "triage")
    assert "stale" in out and "succeeded" not in out
    assert "5 rows, 0 failed, 5 stale (answered under an older spec" in out


def test_a_reused_pid_is_not_our_worker_but_a_paused_worker_still_runs(tmp_path: Path) -> None:
    """A pid that now belongs to another program means the worker is gone; a worker that is only
    paused (laptop asleep, SIGSTOP) is still running: declaring it dead would send its rows again
    while it goes on answering them (found by the red-team pass)."""
    from runner.backends.local.store import JobStore
    from runner.backends.processes import process_start

    store = JobStore(tmp_path)
    store.dir("1").mkdir(parents=True)
    record = {"name": "projects/local/locations/local/batchPredictionJobs/1",
              "state": "JOB_STATE_RUNNING", "createTime": "2026-11-29T00:00:00Z",
              "_local": {"pid": os.getpid(), "pid_start": process_start(os.getpid())}}
    store.write("1", record)
    assert store.observe("1").state is JobState.RUNNING  # alive (or paused): still running
    record["_local"]["pid_start"] = "1"  # the same pid, another process
    store.write("1", record)
    job = store.observe("1")
    assert (job.state, job.error_code) == (JobState.FAILED, 10)


@pytest.mark.parametrize(("mode", "attempts_used"), [("garbage", 1), ("empty", 1)])
def test_a_200_that_is_not_json_is_the_rows_and_keeps_the_other_answers(
        project_dir: ProjectDir, mode: str, attempts_used: int) -> None:
    """Red-team: one 200 with a body that is not JSON killed the worker's pool; the answers of the
    rows beside it, already paid for, were thrown away and paid again three times."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[str] = []

    class Broken(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            text = body["messages"][-1]["content"]
            seen.append(text)
            payload = (b"<html>oops" if mode == "garbage" else b"") if "Charged" in text else \
                json.dumps({"type": "message", "content": [{"type": "text", "text": "ok"}],
                            "usage": {"input_tokens": 1, "output_tokens": 1}}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Broken)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        use_endpoint(project_dir, f"http://127.0.0.1:{server.server_address[1]}")
        result = batchrun(project_dir.root, *WAIT)
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 5, result.stdout + result.stderr  # T1 failed for good
    rows = {r["custom_id"]: r for r in map(json.loads, batchrun(
        project_dir.root, "results", "triage", "--format", "jsonl").stdout.splitlines())}
    assert [r["status"] for r in rows.values()].count("succeeded") == 4
    assert rows["T1"]["status"] == "failed" and "not JSON" in rows["T1"]["error"]
    assert len(seen) == 4 + 2  # every other row once; T1 twice (max_attempts: 2)


def test_a_read_timeout_is_not_sent_again_until_the_user_says_so(
        project_dir: ProjectDir, endpoint: StubServer) -> None:
    """Red-team: an endpoint slower than the executor's timeout was paid nine times for each row
    (three tries in each of three jobs): it may answer, and bill, a request we gave up on."""
    use_endpoint(project_dir, endpoint.url, extra=", timeout: 0.3")
    endpoint.set_mode("ok", delay=0.6)
    result = batchrun(project_dir.root, *WAIT)
    assert result.returncode == 5
    blocked = plan_doc(project_dir.root)["blocked"]
    assert isinstance(blocked, dict) and "endpoint timed out" in blocked["error"]
    assert blocked["failures"] == 1
    import time

    time.sleep(0.8)  # let the stub finish what it was still answering
    assert max(endpoint.seen().values()) == 1  # no request was sent twice


def test_a_refusal_quoting_infrastructure_words_is_still_the_rows() -> None:
    assert fault_of(400, "Bad Request: my order timed out, INTERNAL error, overloaded") is Fault.ROW
    assert fault_of(400, "Your credit balance is too low to access the API") is Fault.AUTH
    assert fault_of(402, "Payment Required") is Fault.AUTH


def test_apply_wait_waits_for_another_apply_instead_of_dying(project_dir: ProjectDir) -> None:
    """Red-team: a `--wait` that met the lock of a cron apply exited 1."""
    fake = FakeBackend()
    fake.locked.add("triage")  # another apply holds it
    with pytest.raises(api.BatchrunError, match="gave up waiting"):
        api.converge(load(project_dir), backend=fake, poll_interval=0.05, timeout=0.3)
    fake.locked.clear()
    final = api.converge(load(project_dir), backend=_running(fake), poll_interval=0.01, timeout=5)
    assert counts(final) == (5, 0, 0)

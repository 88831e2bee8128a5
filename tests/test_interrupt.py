"""Issue 24: interrupting is honest. Ctrl-C during `apply --wait` ends the command, not the jobs:
it says they keep running (and paying) and how to stop them; a second Ctrl-C within a few seconds,
or --cancel-on-interrupt, cancels them. A real `batchrun apply --wait` gets SIGINT while its local
worker sends to a slow stub endpoint, which counts what it was sent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ProjectDir
from tests.stub_endpoint import StubServer

ROWS = 40
ENV = {**os.environ, "STUB_KEY": "sk-test-0123456789"}


@pytest.fixture
def endpoint() -> Iterator[StubServer]:
    server = StubServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def slow(project_dir: ProjectDir, endpoint: StubServer) -> ProjectDir:
    """A local project whose one job takes ROWS x 0.3 s: one row at a time to a slow endpoint."""
    project_dir.write("tickets.csv", "ticket_id,subject,body\n"
                      + "".join(f"T{i},s{i},b{i}\n" for i in range(ROWS)))
    project_dir.write("batchrun.yaml", f"""\
        backend: local
        local:
          executor: {{type: anthropic, base_url: "{endpoint.url}", api_key_env: STUB_KEY,
                      concurrency: 1, retries: 0}}
        """)
    endpoint.set_mode("ok", delay=0.3)
    return project_dir


class Apply:
    """`batchrun apply --auto-approve --wait` in its own process, its stderr read as it comes."""

    def __init__(self, root: Path, *extra: str) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runner", "apply", "--auto-approve", "--wait",
             "--poll-interval", "0.1", *extra], cwd=root, text=True, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=ENV)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, test: object, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not test():  # type: ignore[operator]
            assert time.monotonic() < deadline, f"never saw {what}: {self.lines}"
            assert self.proc.poll() is None or what == "exit", f"exited: {self.lines}"
            time.sleep(0.05)

    def interrupt(self) -> None:
        self.proc.send_signal(signal.SIGINT)

    def finish(self) -> int:
        code = self.proc.wait(timeout=60)
        self._reader.join(timeout=10)
        return code

    @property
    def said(self) -> str:
        return "\n".join(self.lines)


def status(root: Path) -> list[dict[str, object]]:
    out = subprocess.run([sys.executable, "-m", "runner", "status", "--json"], cwd=root, text=True,
                         capture_output=True, timeout=60, check=True, env=ENV)
    jobs: list[dict[str, object]] = json.loads(out.stdout)["jobs"]
    return jobs


def sent(endpoint: StubServer) -> int:
    return sum(endpoint.seen().values())


def wait_until_ended(root: Path) -> None:
    deadline = time.monotonic() + 60
    while any(j["state"] in ("pending", "running", "cancelling") for j in status(root)):
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_ctrl_c_says_the_jobs_keep_running_and_how_to_stop_them(
        slow: ProjectDir, endpoint: StubServer) -> None:
    run = Apply(slow.root)
    run.wait_for(lambda: sent(endpoint) >= 2, "the worker sending")
    run.interrupt()
    assert run.finish() == 130
    said = run.said
    assert "1 job keeps running (and paying) after this command ends" in said, said
    assert "batchrun cancel triage" in said and "Ctrl-C again" in said
    assert "not cancelled" in said
    (job,) = status(slow.root)
    assert job["state"] == "running"  # as it said: the command ended, the job did not
    before = sent(endpoint)
    deadline = time.monotonic() + 30
    while sent(endpoint) == before:  # and it keeps sending (and paying)
        assert time.monotonic() < deadline, "the job stopped sending by itself"
        time.sleep(0.05)
    subprocess.run([sys.executable, "-m", "runner", "cancel", "triage"], cwd=slow.root,
                   check=True, capture_output=True, timeout=60, env=ENV)
    wait_until_ended(slow.root)


def _assert_stopped_sending(root: Path, endpoint: StubServer) -> None:
    wait_until_ended(root)
    (job,) = status(root)
    assert job["state"] == "cancelled"
    stopped = sent(endpoint)
    assert stopped < ROWS
    time.sleep(1.0)  # three rows' time: a worker still sending would have sent more by now
    assert sent(endpoint) == stopped


def test_a_second_ctrl_c_cancels_the_jobs(slow: ProjectDir, endpoint: StubServer) -> None:
    run = Apply(slow.root)
    run.wait_for(lambda: sent(endpoint) >= 2, "the worker sending")
    run.interrupt()
    run.wait_for(lambda: "Ctrl-C again" in run.said, "the warning")
    run.interrupt()
    assert run.finish() == 130
    assert "triage: cancelling 1 job" in run.said, run.said
    _assert_stopped_sending(slow.root, endpoint)


def test_cancel_on_interrupt_cancels_at_the_first_ctrl_c(slow: ProjectDir,
                                                         endpoint: StubServer) -> None:
    run = Apply(slow.root, "--cancel-on-interrupt")
    run.wait_for(lambda: sent(endpoint) >= 2, "the worker sending")
    run.interrupt()
    assert run.finish() == 130
    assert "triage: cancelling 1 job" in run.said and "Ctrl-C again" not in run.said, run.said
    _assert_stopped_sending(slow.root, endpoint)

"""Crash tests (the fast part of `make soak`): apply is SIGKILLed at named points while staging,
creating, collecting and writing the destination; a second `apply --wait` converges with every row
answered exactly once and every answer in the destination."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests import crashkit

POINTS = [("stage", 1, False), ("staged", 1, False), ("staged", 2, False), ("created", 1, False),
          ("created", 3, False), ("collect", 1, True), ("collected", 1, True),
          ("destination-written", 1, True), ("atomic-rename", 1, True), ("staged", 1, True)]


@pytest.mark.parametrize(("point", "nth", "grow_first"), POINTS)
def test_killed_apply_converges_exactly_once(tmp_path: Path, point: str, nth: int,
                                             grow_first: bool) -> None:
    crashkit.make_project(tmp_path)
    trial = crashkit.crash_at(tmp_path, point, nth, grow_first=grow_first)
    assert trial.killed, f"{point}:{nth} was never reached"
    assert (trial.duplicates, trial.losses) == (0, 0), trial


def test_killed_at_a_random_moment(tmp_path: Path) -> None:
    crashkit.make_project(tmp_path)
    trial = crashkit.kill_after(tmp_path, 0.6)
    assert (trial.duplicates, trial.losses) == (0, 0), trial


def test_crash_point_names_are_known() -> None:
    from runner import crashpoints

    assert {p for p, _, _ in POINTS} <= set(crashpoints.POINTS)
    assert signal.SIGKILL == 9


def test_worker_killed_after_writing_its_output_still_counts(tmp_path: Path) -> None:
    """Found by `make soak`: a worker dying between its output and its final record made the job
    look failed, and its 4 answered rows were sent again."""
    crashkit.make_project(tmp_path)
    # Workers inherit the variable: a worker's 3rd atomic rename is its final record write.
    trial = crashkit.crash_at(tmp_path, "atomic-rename", 3, grow_first=False)
    assert (trial.duplicates, trial.losses) == (0, 0), trial


def test_apply_wait_killed_with_its_workers_converges_without_failing_a_row(
        tmp_path: Path) -> None:
    """Issue 10: killed together with its workers, repeatedly, then converged — 3,000 rows used to
    end failed. Prompts are counted by the stub endpoint the workers call."""
    from tests.stub_endpoint import StubServer

    with StubServer().start() as stub:
        stub.set_mode("ok", delay=0.01)
        delays = [0.8, 1.2, 1.6]
        # Under load a shard's job can be killed each time before it answered anything: three in
        # a row is the loop the guard stops (the next test). Here the guard stands above the kills.
        crashkit.make_project(tmp_path, endpoint=stub.url, rows=60,
                              max_job_failures=len(delays) + 1)
        trial = crashkit.kill_storm(tmp_path, delays, sent=lambda: crashkit.stub_sent(stub.url))
    assert trial.ok and trial.failed == 0 and trial.losses == 0, trial


def test_a_worker_dying_on_the_same_rows_three_times_blocks_the_manifest_until_retry(
        tmp_path: Path) -> None:
    """Found by CI under load: the storm above raced the loop guard. A worker that dies each time
    on the same rows (out of memory on a long row) must not be restarted forever: after
    max_job_failures deaths with nothing answered, apply --wait stops, says why and how to go on,
    and spends no row's attempts; `batchrun retry` lets the rows go again."""
    from tests.stub_endpoint import StubServer

    with StubServer().start() as stub:
        # The worker waits on its answers when it is killed (the stub answers only when stopped).
        stub.set_mode("slow", delay=600)
        crashkit.make_project(tmp_path, endpoint=stub.url, rows=4)
        for death in range(1, 4):
            assert crashkit.cli(tmp_path, "apply", "--auto-approve").returncode == 0
            deadline = time.monotonic() + 30
            while len(stub.requests()) < death * crashkit.CONCURRENCY:
                assert time.monotonic() < deadline, "the worker never asked the endpoint"
                time.sleep(0.05)
            assert crashkit.kill_workers(tmp_path) >= 1
            crashkit.wait_idle(tmp_path)
        stub.set_mode("ok")
        final = crashkit.cli(tmp_path, "apply", "--auto-approve", "--wait", "--poll-interval",
                             "0.1", "--timeout", "60")
        assert final.returncode == 5, final.stdout + final.stderr
        assert "3 jobs in a row ended at job level with no row answered" in final.stdout
        assert "the local worker process died" in final.stdout
        assert "No row attempt was used" in final.stdout and "batchrun retry m" in final.stdout
        assert crashkit.stub_sent(stub.url) == {}
        assert crashkit.cli(tmp_path, "retry", "m").returncode == 0
        trial = crashkit.judge(tmp_path, "retried", True, lambda: crashkit.stub_sent(stub.url))
    assert trial.ok and trial.losses == 0 and trial.failed == 0, trial

"""Crash tests (the fast part of `make soak`): apply is SIGKILLed at named points while staging,
creating, collecting and writing the destination; a second `apply --wait` converges with every row
answered exactly once and every answer in the destination."""

from __future__ import annotations

import signal
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
        crashkit.make_project(tmp_path, endpoint=stub.url, rows=60)
        trial = crashkit.kill_storm(tmp_path, [0.8, 1.2, 1.6],
                                    sent=lambda: crashkit.stub_sent(stub.url))
    assert trial.ok and trial.failed == 0 and trial.losses == 0, trial

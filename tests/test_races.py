"""Races: two applies of one manifest at once (one proceeds, the other fails clearly, no duplicate
jobs); a lock left by a killed apply is taken over; the Cloud Storage lock has exactly one winner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterable
from pathlib import Path

import pytest

from runner import api, identity
from runner.applying.executor import job_request
from runner.backends.base import IndexEntry, StagedInput
from runner.backends.stores.gcs import Gcs
from runner.backends.vertex.lease import GcsLock
from runner.errors import LockError
from tests import crashkit
from tests.conftest import ProjectDir
from tests.fakes import FakeBackend
from tests.test_vertex_units import FakeStorage


def test_two_applies_at_once_one_waits_out(tmp_path: Path) -> None:
    crashkit.make_project(tmp_path)
    slow = subprocess.Popen([sys.executable, "-m", "runner", "apply", "--auto-approve"], cwd=tmp_path,
                            env={**os.environ, "BATCHRUN_PAUSE_AT": "staged:3"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    owner = tmp_path / ".batchrun" / "locks" / "m.owner.json"
    for _ in range(200):
        if owner.exists():
            break
        threading.Event().wait(0.05)
    second = crashkit.cli(tmp_path, "apply", "--auto-approve")
    assert second.returncode == 1
    assert f"m is being applied by pid {slow.pid}" in second.stderr
    assert "try again when it finishes" in second.stderr
    slow.wait(timeout=60)
    assert slow.returncode == 0, slow.stderr
    jobs = list((tmp_path / ".batchrun" / "jobs").iterdir())
    assert len(jobs) == 3  # 12 rows in 4-row shards, created once
    trial = crashkit.judge(tmp_path, "race", False, lambda: crashkit.local_sent(tmp_path))
    assert (trial.duplicates, trial.losses) == (0, 0)


def test_lock_of_a_killed_apply_is_taken_over(tmp_path: Path) -> None:
    crashkit.make_project(tmp_path)
    killed = crashkit.cli(tmp_path, "apply", "--auto-approve", env={"BATCHRUN_CRASH_AT": "staged"})
    assert killed.returncode == -9
    owner = tmp_path / ".batchrun" / "locks" / "m.owner.json"
    assert json.loads(owner.read_text())["pid"]  # the dead owner's record is still there
    unlocked = crashkit.cli(tmp_path, "unlock", "m")
    assert "removed the stale lock record of m" in unlocked.stdout
    crashkit.make_project(tmp_path)
    killed = crashkit.cli(tmp_path, "apply", "--auto-approve", env={"BATCHRUN_CRASH_AT": "staged"})
    trial = crashkit.judge(tmp_path, "takeover", True, lambda: crashkit.local_sent(tmp_path))
    assert (trial.duplicates, trial.losses) == (0, 0)


def test_cloud_storage_lock_has_one_winner() -> None:
    gcs = Gcs(FakeStorage())
    uri = "gs://b/staging/_locks/m.json"
    wins, losses = [], []
    barrier = threading.Barrier(8)

    def contend() -> None:
        lock = GcsLock(gcs, uri)
        barrier.wait()
        try:
            lock.acquire("m")
            wins.append(lock)
        except LockError as exc:
            losses.append(str(exc))

    threads = [threading.Thread(target=contend) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and len(losses) == 7
    assert all("being applied by pid" in message for message in losses)
    wins[0].release()


class _AnotherApplyMeanwhile(FakeBackend):
    """While our apply stages its rows (after it checked the manifest's jobs), another apply — one
    that took the lock from us, say — sends the same rows in a job that runs and finishes."""

    def __init__(self, project: api.Project) -> None:
        super().__init__()
        self.project = project
        self.raced = False

    def stage(self, manifest_name: str, rows: Iterable[tuple[bytes, IndexEntry]]) -> StagedInput:
        staged = super().stage(manifest_name, rows)
        if not self.raced:
            self.raced = True
            manifest = self.project.manifest(manifest_name)
            theirs = self.create_job(job_request(
                manifest, staged, identity.display_name(manifest, 0),
                identity.job_labels(manifest, input_digest=staged.digest, shard=0)))
            self.run(theirs.name)
        return staged


def test_a_job_made_and_finished_since_the_plan_stops_the_create(project_dir: ProjectDir) -> None:
    """The re-check right before each create sees every job made for the manifest since the plan,
    finished ones too, not only those still running."""
    project = api.load_project(cwd=project_dir.root)
    fake = _AnotherApplyMeanwhile(project)
    plan = api.plan(project, backend=fake)
    with pytest.raises(api.BatchrunError, match=r"1 job was created for it since the plan "
                                                r"\(another apply\?\)"):
        api.apply(project, plan, backend=fake)
    assert len(fake.created()) == 1  # theirs; none of ours
    fake.run_all()
    assert set(fake.sent.values()) == {1}
    api.converge(project, backend=fake, poll_interval=0)
    assert set(fake.sent.values()) == {1} and len(fake.sent) == 5

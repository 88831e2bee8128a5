"""Issue 21: the Cloud Storage lock is a lease, against the emulator (with its generation
preconditions honoured). A live holder is never taken over for its pid, only once its lease ran
out; the holder that lost it writes nothing more; the heartbeat keeps it; unlock refuses it; and two
applies in their own PID namespaces, one hostname, execute each row once."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest

from runner import api
from runner.backends.processes import pid_alive
from runner.backends.stores.gcs import Gcs
from runner.backends.vertex.lease import GcsLock, LeaseTimes
from runner.errors import LockError
from runner.events import Created, Event
from tests import crashkit
from tests.vertex_env import VertexWorld

SHORT = timedelta(seconds=1)


def times(renew_every: timedelta) -> LeaseTimes:
    return LeaseTimes(ttl=SHORT, renew_every=renew_every)


def gcs_lock(vertex: VertexWorld, lease: LeaseTimes | None = None, name: str = "m") -> GcsLock:
    """The lock object the project's own backend takes for `name` (under the project's prefix)."""
    from runner.backends.vertex.backend import VertexBackend
    from runner.project.settings import load_settings

    uri = VertexBackend(load_settings(cwd=vertex.p.root)[0])._lock(name).uri
    return GcsLock(Gcs(), uri, times=lease)


def dead_pid() -> int:
    """A pid no process has here: what a holder in another PID namespace looks like."""
    return next(p for p in range(2**22 - 1, 1, -1) if not pid_alive(p))


def as_if_from_another_namespace(vertex: VertexWorld, name: str = "m") -> int:
    """Rewrite a held lock's record to name a pid that does not exist here, on this host."""
    path = gcs_lock(vertex, name=name).uri.removeprefix(f"gs://{vertex.bucket}/")
    record = json.loads(vertex.download(path))
    record["pid"] = dead_pid()
    vertex.upload(path, json.dumps(record))
    return int(record["pid"])


def write_manifest(vertex: VertexWorld, rows: int = 4, per_job: int = 2) -> None:
    vertex.p.write("batchrun.yaml", f"""\
        backend: vertex
        project: batchrun-test
        region: us-east5
        staging: gs://{vertex.bucket}/staging
        quota: {{internal_retry_delay: 1, max_rows_per_job: {per_job}}}
        """)
    vertex.upload("in/rows.jsonl", "".join(f'{{"id": "r{i:02d}", "text": "row {i}"}}\n'
                                           for i in range(rows)))
    vertex.p.write("m.yaml", f"""\
        apiVersion: batchrun/v1
        kind: BatchJob
        metadata: {{name: m}}
        spec:
          model: meta/llama-4-maverick-17b-128e-instruct-maas
          parameters: {{max_tokens: 16}}
          source:
            gcs: {{uris: ["gs://{vertex.bucket}/in/rows.jsonl"]}}
            id: id
          prompt: {{user: "{{{{ text }}}}"}}
          destination:
            gcs: {{prefix: "gs://{vertex.bucket}/out"}}
        """)


def test_a_live_holder_whose_pid_does_not_exist_here_is_not_taken_over(
        vertex: VertexWorld) -> None:
    """The report: two applies in separate PID namespaces with one hostname; B judged A's pid dead
    and took the lock of a live apply."""
    holder = gcs_lock(vertex)
    holder.acquire("m")
    try:
        pid = as_if_from_another_namespace(vertex)
        with pytest.raises(LockError, match=f"m is being applied by pid {pid} .*its lease runs"):
            gcs_lock(vertex).acquire("m")
        holder.check()  # still its own
    finally:
        holder.release()
    path = holder.uri.removeprefix(f"gs://{vertex.bucket}/")
    assert not vertex.gcs.bucket(vertex.bucket).blob(path).exists()


def test_unlock_refuses_a_live_lease_naming_its_holder(vertex: VertexWorld, run: Any) -> None:
    write_manifest(vertex)
    holder = gcs_lock(vertex)
    holder.acquire("m")
    try:
        pid = as_if_from_another_namespace(vertex)
        out = run("unlock", "m", code=1)
        assert f"m is locked by pid {pid}" in out and "whose lease runs until" in out, out
        assert "refusing to unlock" in out
        holder.check()
    finally:
        holder.release()
    assert "m was not locked" in run("unlock", "m")


def test_the_heartbeat_keeps_a_lease_alive_past_its_ttl(vertex: VertexWorld) -> None:
    holder = gcs_lock(vertex, times(timedelta(seconds=0.2)))
    holder.acquire("m")
    try:
        first = holder.generation
        time.sleep(3 * SHORT.total_seconds())  # three leases long: renewed all along
        with pytest.raises(LockError, match="m is being applied by pid"):
            gcs_lock(vertex, times(timedelta(seconds=0.2))).acquire("m")
        holder.check()
        assert holder.generation != first
    finally:
        holder.release()


def test_an_expired_lease_is_taken_over_and_its_old_holder_creates_no_more_jobs(
        vertex: VertexWorld) -> None:
    """A (its heartbeat stalled: it renews once an hour) creates the first of two jobs; while it is
    stopped there, its lease runs out, B takes it over, creates the other job and collects both;
    A resumes and stops before its next write. Every row executed once."""
    from runner.backends.vertex.backend import VertexBackend

    write_manifest(vertex)
    project = vertex.project()
    a = VertexBackend(project.settings, lease=times(timedelta(hours=1)))
    b = VertexBackend(project.settings, lease=times(timedelta(seconds=0.2)))
    waited: list[str] = []

    def meanwhile(event: Event) -> None:
        if isinstance(event, Created) and not waited:
            waited.append(event.job)
            final = api.converge(vertex.project(), backend=b, poll_interval=0.2, timeout=60)
            assert final.manifest("m").rows.done == 4

    with pytest.raises(LockError, match=r"lost the lock of m to another apply .*stopped before "
                                        r"writing; run the command again"):
        api.apply(project, backend=a, say=meanwhile)
    assert waited
    jobs = vertex.fake_jobs()
    assert len(jobs) == 2  # A's first and B's; none by A after the takeover
    assert vertex.sent_ids() == ["r00", "r01", "r02", "r03"]
    assert not api.plan(vertex.project(), backend=b).has_changes


def test_two_applies_in_their_own_pid_namespaces_execute_every_row_once(
        vertex: VertexWorld) -> None:
    if not crashkit.unshare_works():
        pytest.skip("unshare --pid --fork --mount-proc is not permitted here")
    write_manifest(vertex, rows=12, per_job=4)
    results = crashkit.applies_in_own_pid_namespaces(vertex.p.root, {})
    for r in results:
        assert r.returncode in (0, 1), r.stderr
        if r.returncode == 1:  # the loser: refused by the live lease, or told of the jobs made
            assert ("m is being applied by pid" in r.stderr
                    or "since the plan (another apply?)" in r.stderr), r.stderr
    assert any(r.returncode == 0 for r in results)
    assert vertex.sent_ids() == [f"r{i:02d}" for i in range(12)]
    assert not api.plan(vertex.project()).has_changes


def test_a_stopped_apply_resumes_after_losing_its_lease_and_says_so(vertex: VertexWorld) -> None:
    """The report end to end: apply A is stopped (SIGSTOP: its heartbeat too) after its first of
    two jobs; its lease runs out; apply B takes the lock, creates the other job and collects both;
    A resumes and stops before its next write, with a message, not a traceback."""
    import os
    import signal
    import subprocess
    import sys

    from runner.backends.vertex.lease import LEASE_ENV

    write_manifest(vertex)
    env = {**os.environ, LEASE_ENV: "1"}
    a = subprocess.Popen([sys.executable, "-m", "runner", "apply", "--auto-approve"],
                         cwd=vertex.p.root, env={**env, "BATCHRUN_PAUSE_AT": "stage:4"},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not vertex.fake_jobs():  # A created its first job; it pauses before the next
            assert a.poll() is None and time.monotonic() < deadline, a.communicate()
            time.sleep(0.05)
        os.kill(a.pid, signal.SIGSTOP)
        b = crashkit.converge(vertex.p.root, {LEASE_ENV: "1"})
        assert b.returncode == 0, b.stderr
    finally:
        os.kill(a.pid, signal.SIGCONT)
    _, err = a.communicate(timeout=60)
    assert a.returncode == 1, err
    assert "lost the lock of m to another apply" in err and "stopped before writing" in err, err
    assert "Traceback" not in err
    assert len(vertex.fake_jobs()) == 2  # none by A after it resumed
    assert vertex.sent_ids() == ["r00", "r01", "r02", "r03"]

"""Issue 21, found by the red team: two containers (PID namespaces) sharing one project folder.
A local worker's pid means nothing in another PID namespace: seen from there, it is alive while
its heartbeat is fresh — never judged dead by a pid, which would send its rows a second time."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import crashkit
from tests.conftest import ProjectDir
from tests.stub_endpoint import StubServer


def _batchrun(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=root, text=True,
                          capture_output=True, timeout=120, check=False, env=dict(os.environ))


def test_a_worker_in_another_pid_namespace_is_not_judged_dead_by_its_pid(
        project_dir: ProjectDir) -> None:
    if not crashkit.unshare_works():
        pytest.skip("unshare --pid --fork --mount-proc is not permitted here")
    with StubServer().start() as stub:
        stub.set_mode("ok", delay=0.6)  # 5 rows, one at a time: about 3 s of work
        project_dir.write("batchrun.yaml", f"""\
            backend: local
            local:
              executor: {{type: anthropic, base_url: "{stub.url}", concurrency: 1}}
            """)
        root = project_dir.root
        # Container A: creates the job, and lives on while its worker answers.
        a = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c",
             f"{sys.executable} -m runner apply --auto-approve && sleep 8"],
            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 30
            while not any('"pid"' in p.read_text()
                          for p in (root / ".batchrun" / "jobs").glob("*/job.json")):
                assert time.monotonic() < deadline and a.poll() is None, "A never started a job"
                time.sleep(0.1)
            time.sleep(0.5)
            # Container B, in this PID namespace: A's worker pid is not a pid here.
            status = _batchrun(root, "status")
            assert "died" not in status.stdout + status.stderr, status.stdout
            plan = _batchrun(root, "plan")
            assert "0 to do" in plan.stdout, plan.stdout
            assert _batchrun(root, "apply", "--auto-approve").returncode == 0
        finally:
            a.wait(timeout=60)
        done = _batchrun(root, "apply", "--auto-approve", "--wait", "--poll-interval", "0.2")
        assert done.returncode == 0, done.stdout + done.stderr
        assert sum(stub.seen().values()) == 5 and max(stub.seen().values()) == 1

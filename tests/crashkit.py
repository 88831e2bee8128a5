"""The crash-trial harness: runs `batchrun apply` as a subprocess, kills it (SIGKILL) at a named
point or after a random delay — with its local workers too — runs `apply --wait` again, then counts
how often each row was answered (by the executor's record, or by a stub endpoint that counts the
prompts it was paid for), whether any row ended failed, and whether the destination holds every
answer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

ROWS = 12


@dataclass
class Trial:
    name: str
    rows: int
    killed: bool
    duplicates: int  # rows answered more than once under one spec
    losses: int  # source rows without a succeeded answer in the destination
    failed: int = 0  # rows the destination reports failed: a crash is never the row's fault
    resent: int = 0  # prompts answered beyond one per row
    allowed: int = 0  # prompts that were in flight when workers died: re-sending them is fair

    @property
    def ok(self) -> bool:
        return self.losses == 0 and self.failed == 0 and self.resent <= self.allowed


def cli(root: Path, *args: str, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=root, text=True,
                          capture_output=True, timeout=timeout, env={**os.environ, **(env or {})},
                          check=False)


CONCURRENCY = 2  # of the local workers' calls to a stub endpoint


def make_project(root: Path, backend_yaml: str = "backend: local\n", rows: int = ROWS,
                 endpoint: str | None = None, max_job_failures: int = 3) -> None:
    """A project of `rows` rows; with `endpoint`, local workers call that Anthropic-compatible
    stub (tests/stub_endpoint.py), which counts every prompt it answers. `max_job_failures`: the
    loop guard (jobs of the same rows dying in a row with nothing answered block the manifest)."""
    root.mkdir(parents=True, exist_ok=True)
    local = (f"local: {{executor: {{type: anthropic, base_url: \"{endpoint}\", "
             f"concurrency: {CONCURRENCY}, retries: 0}}}}\n" if endpoint else "")
    (root / "batchrun.yaml").write_text(backend_yaml + local + "quota: {max_rows_per_job: 4, "
                                        "internal_retry_delay: 0, failure_backoff: 0, "
                                        f"max_job_failures: {max_job_failures}}}\n")
    write_rows(root, rows)
    (root / "m.yaml").write_text(MANIFEST)


# The trials' manifest, m: rows.jsonl's `text` to Claude, answers in out/m.jsonl.
MANIFEST = """\
apiVersion: batchrun/v1
kind: BatchJob
metadata: {name: m}
spec:
  model: anthropic/claude-haiku-4-5@20251001
  parameters: {max_tokens: 10}
  source: {file: rows.jsonl, id: id}
  prompt: {user: "{{ text }}"}
  destination: {file: out/m.jsonl}
"""


def write_rows(root: Path, count: int) -> None:
    (root / "rows.jsonl").write_text("".join(
        f'{{"id": "r{i:03d}", "text": "row {i}"}}\n' for i in range(count)))


def stub_sent(url: str) -> Counter[str]:
    """Prompts the stub endpoint answered, as row ids ("row 7" is r007)."""
    seen = requests.get(f"{url}/_stub/seen", timeout=10).json()["seen"]
    return Counter(f"r{int(text.split()[-1]):03d}" for text in seen)


def worker_pids(root: Path) -> list[int]:
    pids = []
    for record in (root / ".batchrun" / "jobs").glob("*/job.json"):
        try:
            pid = json.loads(record.read_text()).get("_local", {}).get("pid")
        except (OSError, ValueError):
            continue
        if pid:
            pids.append(int(pid))
    return pids


def kill_workers(root: Path) -> int:
    killed = 0
    for pid in worker_pids(root):
        try:
            os.kill(pid, signal.SIGKILL)
            killed += 1
        except ProcessLookupError:
            pass
    return killed


def local_sent(root: Path) -> Counter[str]:
    log = root / ".batchrun" / "sent.jsonl"
    if not log.exists():
        return Counter()
    return Counter(json.loads(x)["custom_id"] for x in log.read_text().splitlines() if x)


def wait_idle(root: Path, env: dict[str, str] | None = None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = cli(root, "plan", "--json", env=env)
        doc = json.loads(out.stdout)
        if not any(m["rows"]["in_flight"] for m in doc["manifests"]):
            return
        time.sleep(0.1)
    raise AssertionError("jobs never finished")


def converge(root: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`apply --wait`, started again while another apply's lock holds it off: a killed (or stopped)
    apply's Cloud Storage lock holds until its lease runs out."""
    deadline = time.monotonic() + 90
    while True:
        final = cli(root, "apply", "--auto-approve", "--wait", "--poll-interval", "0.1",
                    "--timeout", "90", env=env)
        held = "is being applied by" in final.stderr or "being written by another" in final.stderr
        if not held or time.monotonic() > deadline:
            return final
        time.sleep(0.5)


def judge(root: Path, name: str, killed: bool, sent: Callable[[], Counter[str]],
          env: dict[str, str] | None = None, allowed: int = 0) -> Trial:
    final = converge(root, env)
    assert final.returncode in (0, 5), final.stdout + final.stderr
    ids = [json.loads(x)["id"] for x in (root / "rows.jsonl").read_text().splitlines()]
    results = [json.loads(x) for x in cli(root, "results", "m", "--format", "jsonl",
                                          env=env).stdout.splitlines()]
    answered = {r["custom_id"] for r in results if r["status"] == "succeeded"}
    counts = sent()
    return Trial(name, len(ids), killed, sum(1 for i in ids if counts[i] > 1),
                 sum(1 for i in ids if i not in answered),
                 failed=sum(1 for r in results if r["status"] == "failed"),
                 resent=sum(counts[i] for i in ids) - sum(1 for i in ids if counts[i]),
                 allowed=allowed)


def crash_at(root: Path, point: str, nth: int, *, grow_first: bool,
             env: dict[str, str] | None = None,
             sent: Callable[[], Counter[str]] | None = None, allowed: int = 0) -> Trial:
    """grow_first: answer the first rows before the crash, so collect and create both run.
    `allowed`: prompts each killed worker may have had in flight."""
    sent = sent or (lambda: local_sent(root))
    if grow_first:
        write_rows(root, ROWS // 2)
        assert cli(root, "apply", "--auto-approve", env=env).returncode == 0
        wait_idle(root, env)
        write_rows(root, ROWS)
    crashed = cli(root, "apply", "--auto-approve", env={**(env or {}),
                                                        "BATCHRUN_CRASH_AT": f"{point}:{nth}"})
    # Workers inherit the variable: at "answered" each one dies at its N-th answer, and what each
    # had in flight may be sent again.
    dead = _dead_workers(root) if point == "answered" else 0
    killed = crashed.returncode == -signal.SIGKILL or dead > 0
    return judge(root, f"{point}:{nth}{' after growth' if grow_first else ''}", killed, sent, env,
                 allowed * max(dead, 1))


def _dead_workers(root: Path, timeout: float = 30) -> int:
    """Wait until no local worker runs; then how many died without writing their final record."""
    deadline = time.monotonic() + timeout
    while True:
        jobs = []
        for path in (root / ".batchrun" / "jobs").glob("*/job.json"):
            try:
                jobs.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
        running = [j for j in jobs if j.get("state") in ("JOB_STATE_PENDING", "JOB_STATE_RUNNING")]
        pids = [j.get("_local", {}).get("pid") for j in running]
        if all(pid and not _alive(int(pid)) for pid in pids) or time.monotonic() > deadline:
            return len(running)
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def kill_after(root: Path, delay: float, env: dict[str, str] | None = None,
               sent: Callable[[], Counter[str]] | None = None) -> Trial:
    sent = sent or (lambda: local_sent(root))
    process = subprocess.Popen([sys.executable, "-m", "runner", "apply", "--auto-approve"],
                               cwd=root, env={**os.environ, **(env or {})},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    killed = process.poll() is None
    process.kill()
    process.wait()
    return judge(root, f"kill after {delay:.2f}s", killed, sent, env)


def kill_storm(root: Path, delays: list[float], sent: Callable[[], Counter[str]]) -> Trial:
    """`apply --wait` killed together with its local workers (a crashed laptop, an OOM kill), once
    per delay; then one more `apply --wait` must converge. Each kill may cost what was in flight.
    Make the project with `max_job_failures` above the kills: a job killed each time before it
    answered anything is the loop the guard stops (test_a_worker_dying_on_the_same_rows_...)."""
    kills = 0
    for delay in delays:
        process = subprocess.Popen([sys.executable, "-m", "runner", "apply", "--auto-approve",
                                    "--wait", "--poll-interval", "0.1"], cwd=root,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        process.kill()
        process.wait()
        kills += 1 + kill_workers(root)
    return judge(root, f"{len(delays)} kills of apply --wait and its workers", True, sent,
                 allowed=kills * CONCURRENCY)


def fake_sent(vertex_url: str) -> Counter[str]:
    sent = requests.get(f"{vertex_url}/_fake/sent", timeout=10).json()
    return Counter(s["custom_id"] for s in sent)


def table(trials: list[Trial]) -> str:
    """One line per trial: rows failed and lost must be 0, prompts re-sent at most those in flight
    when a worker died (`allowed`)."""
    head = (f"{'trial':46} {'rows':>5} {'killed':>6} {'failed':>6} {'lost':>5} {'dupes':>5} "
            f"{'resent':>6} {'allowed':>7} {'ok':>3}")
    lines = [head]
    for t in trials:
        lines.append(f"{t.name:46} {t.rows:>5} {'yes' if t.killed else 'no':>6} {t.failed:>6} "
                     f"{t.losses:>5} {t.duplicates:>5} {t.resent:>6} {t.allowed:>7} "
                     f"{'yes' if t.ok else 'NO':>3}")
    lines.append(f"{'TOTAL: ' + str(len(trials)) + ' trials':46} {sum(t.rows for t in trials):>5} "
                 f"{sum(t.killed for t in trials):>6} {sum(t.failed for t in trials):>6} "
                 f"{sum(t.losses for t in trials):>5} {sum(t.duplicates for t in trials):>5} "
                 f"{sum(t.resent for t in trials):>6} {sum(t.allowed for t in trials):>7} "
                 f"{'yes' if all(t.ok for t in trials) else 'NO':>3}")
    return "\n".join(lines)


def unshare_works() -> bool:
    """Whether this machine lets us start a process in its own PID namespace (root, or user
    namespaces allowed)."""
    try:
        return subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"],
                              capture_output=True, timeout=10, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def applies_in_own_pid_namespaces(root: Path, env: dict[str, str], count: int = 2,
                                  timeout: float = 90) -> list[subprocess.CompletedProcess[str]]:
    """`batchrun apply --auto-approve --wait` `count` times at once, each in its own PID namespace
    (one hostname: containers with host networking). Each apply gets another pid inside its
    namespace (short commands run first), so each holder's recorded pid is absent, or another
    process, in the other namespaces: what misled the lock of issue 21."""
    apply = " ".join([sys.executable, "-m", "runner", "apply", "--auto-approve", "--wait",
                      "--poll-interval", "0.2", "--timeout", str(int(timeout))])
    procs = [subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c",
                               "/bin/true; " * i + apply + "; exit $?"], cwd=root,
                              env={**os.environ, **env}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for i in range(count)]
    done = []
    for p in procs:
        out, err = p.communicate(timeout=timeout + 30)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return done

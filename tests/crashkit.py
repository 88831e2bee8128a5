"""The crash-trial harness: runs `batchrun apply` as a subprocess, kills it (SIGKILL) at a named
point or after a random delay, runs `apply --wait` again, then counts, from the executor's own
record, how often each row was answered and whether the destination holds every answer."""

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


def cli(root: Path, *args: str, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=root, text=True,
                          capture_output=True, timeout=timeout, env={**os.environ, **(env or {})},
                          check=False)


def make_project(root: Path, backend_yaml: str = "backend: local\n") -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "batchrun.yaml").write_text(backend_yaml + "quota: {max_rows_per_job: 4, "
                                        "internal_retry_delay: 0}\n")
    write_rows(root, ROWS)
    (root / "m.yaml").write_text("""\
apiVersion: batchrun/v1
kind: BatchJob
metadata: {name: m}
spec:
  model: anthropic/claude-3-5-haiku@20241022
  parameters: {max_tokens: 10}
  source: {file: rows.jsonl, id: id}
  prompt: {user: "{{ text }}"}
  destination: {file: out/m.jsonl}
""")


def write_rows(root: Path, count: int) -> None:
    (root / "rows.jsonl").write_text("".join(
        f'{{"id": "r{i:03d}", "text": "row {i}"}}\n' for i in range(count)))


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


def judge(root: Path, name: str, killed: bool, sent: Callable[[], Counter[str]],
          env: dict[str, str] | None = None) -> Trial:
    final = cli(root, "apply", "--auto-approve", "--wait", "--poll-interval", "0.1",
                "--timeout", "90", env=env)
    assert final.returncode == 0, final.stdout + final.stderr
    ids = [json.loads(x)["id"] for x in (root / "rows.jsonl").read_text().splitlines()]
    results = cli(root, "results", "m", "--format", "jsonl", env=env)
    answered = {json.loads(x)["custom_id"] for x in results.stdout.splitlines()
                if json.loads(x)["status"] == "succeeded"}
    counts = sent()
    return Trial(name, len(ids), killed, sum(1 for i in ids if counts[i] > 1),
                 sum(1 for i in ids if i not in answered))


def crash_at(root: Path, point: str, nth: int, *, grow_first: bool,
             env: dict[str, str] | None = None,
             sent: Callable[[], Counter[str]] | None = None) -> Trial:
    """grow_first: answer the first rows before the crash, so collect and create both run."""
    sent = sent or (lambda: local_sent(root))
    if grow_first:
        write_rows(root, ROWS // 2)
        assert cli(root, "apply", "--auto-approve", env=env).returncode == 0
        wait_idle(root, env)
        write_rows(root, ROWS)
    crashed = cli(root, "apply", "--auto-approve", env={**(env or {}),
                                                        "BATCHRUN_CRASH_AT": f"{point}:{nth}"})
    killed = crashed.returncode == -signal.SIGKILL
    return judge(root, f"{point}:{nth}{' after growth' if grow_first else ''}", killed, sent, env)


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


def fake_sent(vertex_url: str) -> Counter[str]:
    sent = requests.get(f"{vertex_url}/_fake/sent", timeout=10).json()
    return Counter(s["custom_id"] for s in sent)


def table(trials: list[Trial]) -> str:
    lines = [f"{'trial':40} {'rows':>5} {'killed':>6} {'dupes':>6} {'losses':>6}"]
    for t in trials:
        lines.append(f"{t.name:40} {t.rows:>5} {'yes' if t.killed else 'no':>6} "
                     f"{t.duplicates:>6} {t.losses:>6}")
    lines.append(f"{'TOTAL: ' + str(len(trials)) + ' trials':40} {sum(t.rows for t in trials):>5} "
                 f"{sum(t.killed for t in trials):>6} {sum(t.duplicates for t in trials):>6} "
                 f"{sum(t.losses for t in trials):>6}")
    return "\n".join(lines)

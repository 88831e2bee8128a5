"""The hostile endpoints of `--only hostile` (issue 22): a local job against an endpoint that trickles
one byte every 0.5 s and one whose chunked body never ends, each timed (the job's own start and
end) and its worker's peak memory read from /proc, against the targets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

TRICKLE_TIMEOUT = 3.0  # the executor's timeout in the trickle case
TRICKLE_SLACK = 5.0  # target: the job ends within its timeout and this
ENDLESS_MB = 100.0  # target: the worker stays within this over its baseline
KILL_MB = 1024.0  # a worker that grows past this is stopped: the bench is not to eat the machine


def _kb(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _alive(pid: int) -> bool:
    state = Path(f"/proc/{pid}/stat")
    try:
        return state.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _seconds(record: dict[str, Any]) -> float | None:
    from datetime import datetime

    if "endTime" not in record:
        return None
    start, end = (datetime.fromisoformat(record[k].replace("Z", "+00:00")).timestamp()
                  for k in ("startTime", "endTime"))
    return end - start


def one_case(case: str, mode: str, delay: float, extra: str) -> dict[str, Any]:
    """One job of 4 rows (2 at a time) against the stub in `mode`; the worker watched until it
    ends."""
    from bench.bench import generate, project
    from tests.stub_endpoint import StubServer

    with StubServer().start() as stub, tempfile.TemporaryDirectory(prefix="batchrun-bench-") as tmp:
        stub.set_mode(mode, delay)
        root = Path(tmp)
        project(root, settings=f"backend: local\nlocal:\n  executor: {{type: anthropic, "
                               f"base_url: '{stub.url}', concurrency: 2, retries: 0{extra}}}\n")
        generate(root / "rows.jsonl", 0, 4)
        subprocess.run([sys.executable, "-m", "runner", "apply", "--auto-approve"], cwd=root,
                       check=True, capture_output=True)
        (path,) = (root / ".batchrun" / "jobs").glob("*/job.json")
        while not stub.requests():
            time.sleep(0.02)
        pid = int(orjson.loads(path.read_bytes())["_local"]["pid"])
        baseline = peak = _kb(pid, "VmRSS") or 0
        deadline = time.monotonic() + 120
        while _alive(pid) and time.monotonic() < deadline:
            peak = max(peak, _kb(pid, "VmHWM") or 0)
            if (peak - baseline) / 1024 > KILL_MB:
                os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.02)
        killed = _alive(pid)
        if killed:
            os.kill(pid, signal.SIGKILL)
        record = orjson.loads(path.read_bytes())
    seconds = _seconds(record)
    over = (peak - baseline) / 1024
    return {"case": case, "seconds": None if seconds is None else round(seconds, 2),
            "baseline_mb": round(baseline / 1024, 1), "peak_over_baseline_mb": round(over, 1),
            "state": record.get("state"), "error": (record.get("error") or {}).get("message", ""),
            "sent": sum(stub.seen().values()), "killed": killed}


def hostile_endpoints() -> list[dict[str, Any]]:
    trickle = one_case("endpoint-trickle", "trickle", 0.5, f", timeout: {TRICKLE_TIMEOUT:g}")
    trickle["target"] = f"ends within {TRICKLE_TIMEOUT + TRICKLE_SLACK:g} s"
    trickle["within_target"] = (trickle["seconds"] is not None
                                and trickle["seconds"] <= TRICKLE_TIMEOUT + TRICKLE_SLACK)
    endless = one_case("endpoint-endless-body", "endless", 0.5, "")
    endless["target"] = f"under {ENDLESS_MB:g} MB over baseline"
    endless["within_target"] = (not endless["killed"]
                                and endless["peak_over_baseline_mb"] < ENDLESS_MB)
    return [trickle, endless]


def hostile_endpoint_line(row: dict[str, Any]) -> str:
    seconds = "never ended" if row["seconds"] is None else f"{row['seconds']:.2f} s"
    return (f"hostile endpoint {row['case']:<22} {seconds}, worker +{row['peak_over_baseline_mb']:.0f}"
            f" MB over {row['baseline_mb']:.0f} MB, {row['sent']} prompts sent   target "
            f"{row['target']}: {'met' if row['within_target'] else 'MISSED'}")

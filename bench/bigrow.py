"""Issue 22: a 400 MB source row, as `batchrun plan` and `batchrun validate` meet it — refused while
it is read, with peak memory bounded by a small multiple of quota.max_request_bytes (it was 1.6 GB in
plan and 1.2 GB in validate). Part of `python -m bench.bench --only hostile`."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROW_MB = 400
MAX_REQUEST_BYTES = 1_000_000  # the default quota.max_request_bytes
SECONDS = 10.0  # reading 400 MB (twice: columns, then rows) on a shared 2-core machine
MANIFEST = """\
apiVersion: batchrun/v1
kind: BatchJob
metadata: {name: big-row}
spec:
  model: meta/llama-4-maverick-17b-128e-instruct-maas
  source: {file: rows.jsonl, id: id}
  prompt: {user: "{{ text }}"}
  destination: {file: out/big-row.jsonl}
"""


def _rows(path: Path, big_mb: int) -> None:
    """Two small rows around one of `big_mb` MB (0: a small one in its place, for the baseline)."""
    chunk = b"x" * (1 << 20)
    with path.open("wb") as fh:
        fh.write(b'{"id": "a", "text": "small"}\n{"id": "big", "text": "')
        for _ in range(big_mb):
            fh.write(chunk)
        fh.write(b'"}\n{"id": "b", "text": "small too"}\n')


def _run(work: Path, command: str) -> tuple[int, float, float, str]:
    """(exit code, seconds, peak RSS in MB, first line of stderr) of one CLI process."""
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "runner", command], cwd=work,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "BATCHRUN_NO_CACHE": "1"})
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - started
    assert proc.stderr is not None
    first = proc.stderr.read().decode().splitlines()[:1]
    proc.stderr.close()
    return os.waitstatus_to_exitcode(status), seconds, usage.ru_maxrss / 1024, (
        first[0] if first else "")


def big_row() -> list[dict[str, Any]]:
    """plan and validate on the 400 MB row, each against the same command on the same project with
    that row small (the baseline): peak within baseline + 3 x max_request_bytes."""
    out = []
    with tempfile.TemporaryDirectory(prefix="batchrun-bench-bigrow-") as tmp:
        work = Path(tmp)
        (work / "batchrun.yaml").write_text(f"backend: local\nquota: {{max_request_bytes: "
                                            f"{MAX_REQUEST_BYTES}}}\n")
        (work / "m.yaml").write_text(MANIFEST)
        for command in ("plan", "validate"):
            _rows(work / "rows.jsonl", 0)
            _, _, baseline, _ = _run(work, command)
            _rows(work / "rows.jsonl", ROW_MB)
            code, seconds, mb, message = _run(work, command)
            target = baseline + 3 * MAX_REQUEST_BYTES / 2**20
            out.append({"case": f"row-{ROW_MB}mb ({command})", "seconds": round(seconds, 2),
                        "rss_mb": round(mb, 1), "baseline_mb": round(baseline, 1),
                        "target_mb": round(target, 1), "target_seconds": SECONDS,
                        # plan refuses the row (exit 1); validate reads rows only for their
                        # columns, passes the long one over unread and exits 0
                        "refused": code == 1, "exit_code": code,
                        "within_target": seconds <= SECONDS and mb <= target,
                        "message": message})
    return out

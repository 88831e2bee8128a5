"""`make bench`'s end-to-end render line (issue 15): `batchrun render` of 200,000 generated rows
through the command, start-up included, against a naive load-all Jinja + `json.dumps` script run
the same way — both fresh processes, wall clock and peak memory."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

NAIVE = '''\
import json, sys
import jinja2
rows = [json.loads(line) for line in open("rows.jsonl", encoding="utf-8")]
system, user = jinja2.Template(sys.argv[1]), jinja2.Template(sys.argv[2])
out = sys.stdout
for row in rows:
    request = {"custom_id": row["ticket_id"], "request": {
        "messages": [{"role": "user", "content": user.render(**row)}],
        "anthropic_version": "vertex-2023-10-16", "max_tokens": 64,
        "system": system.render(**row)}}
    out.write(json.dumps(request) + "\\n")
'''


def _run(cmd: list[str], cwd: Path) -> tuple[float, float | None]:
    """Wall seconds and peak RSS (MB, by /usr/bin/time when there) of one fresh process."""
    from bench.bench import _env

    env = _env()
    timer = ["/usr/bin/time", "-f", "%M"] if Path("/usr/bin/time").exists() else []
    started = time.perf_counter()
    done = subprocess.run([*timer, *cmd], cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - started
    last = done.stderr.strip().splitlines()[-1:] if timer else []
    return seconds, int(last[0]) / 1024 if last and last[0].isdigit() else None


def render_cli(rows: int = 200_000) -> dict[str, Any]:
    from bench.bench import SYSTEM, USER, generate, project

    with tempfile.TemporaryDirectory(prefix="batchrun-bench-cli-") as tmp:
        work = Path(tmp)
        project(work)
        generate(work / "rows.jsonl", 0, rows)
        (work / "naive.py").write_text(NAIVE)
        _run([sys.executable, "-m", "runner", "render", "triage", "--limit", "1"], work)  # warm
        naive_s, naive_mb = _run([sys.executable, "naive.py", SYSTEM, USER], work)
        ours_s, ours_mb = _run([sys.executable, "-m", "runner", "render", "triage"], work)
    return {"rows": rows, "batchrun_seconds": ours_s, "batchrun_mb": ours_mb,
            "naive_seconds": naive_s, "naive_mb": naive_mb, "ratio": naive_s / ours_s}


def render_cli_line(r: dict[str, Any]) -> str:
    def mb(v: float | None) -> str:
        return "?" if v is None else f"{v:.0f} MB"

    return (f"render {r['rows']:,} rows end to end (CLI, start-up included)   batchrun "
            f"{r['batchrun_seconds']:.2f} s {mb(r['batchrun_mb'])}   naive load-all script "
            f"{r['naive_seconds']:.2f} s {mb(r['naive_mb'])}   ratio {r['ratio']:.2f}x   "
            f"target ≥3.5x: "
            f"{'met' if r['ratio'] >= 3.5 else 'MISSED'}")

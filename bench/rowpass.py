"""`make bench`'s row-pass lines (issue 26): `batchrun plan` of N answered rows + 1,000 new (JSONL,
local files) through the CLI, start-up included, side by side with two baselines the bench builds
itself — a hand-written orjson loop and one DuckDB anti-join query, each reading both files,
hashing every source row and keeping the rows whose id is not answered — and a `batchrun render`
of every row. Each runs as a fresh process: wall clock and peak memory. Targets are printed,
never asserted."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

NEW = 1_000
PLAN_1M_SECONDS = 1.5  # plan of 1M answered + 1k new
PLAN_VS_DUCKDB = 1.5  # ... and at most this many times the DuckDB query
PLAN_VS_RENDER = 0.6  # plan of 100k + 1k, as a share of a render of every row

ORJSON_LOOP = '''\
import hashlib, orjson
answered = set()
with open("out/triage.jsonl", "rb") as fh:
    for line in fh:
        row = orjson.loads(line)
        if row["status"] == "succeeded":
            answered.add(row["custom_id"])
new = 0
with open("rows.jsonl", "rb") as fh:
    for line in fh:
        row = orjson.loads(line)
        used = orjson.dumps([row["subject"], row["body"]])
        hashlib.sha256(used).hexdigest()
        new += row["ticket_id"] not in answered
print(new)
'''

DUCKDB_QUERY = '''\
import duckdb
con = duckdb.connect()
new, _ = con.execute("""
    SELECT count(*), max(s.fp) FROM (
        SELECT ticket_id, sha256(to_json([subject, body])) AS fp
        FROM read_json('rows.jsonl', format = 'newline_delimited',
                       columns = {ticket_id: 'VARCHAR', subject: 'VARCHAR', body: 'VARCHAR'})
    ) s ANTI JOIN (
        SELECT custom_id FROM read_json('out/triage.jsonl', format = 'newline_delimited',
                                        columns = {custom_id: 'VARCHAR', status: 'VARCHAR'})
        WHERE status = 'succeeded'
    ) d ON s.ticket_id = d.custom_id""").fetchone()
print(new)
'''


def _answered(work: Path, answered: int) -> None:
    """A project whose destination holds an answer for each of `answered` rows under this spec,
    then 1,000 rows more in the source (set-up, not measured)."""
    from bench.bench import generate, one_answer_all, project

    project(work)
    generate(work / "rows.jsonl", 0, answered)
    one_answer_all(work)
    generate(work / "rows.jsonl", answered, NEW)


def _measured(cmd: list[str], work: Path) -> dict[str, Any]:
    from bench.cli_render import _run

    seconds, mb = _run(cmd, work)
    return {"seconds": seconds, "mb": mb}


def rowpass(sizes: tuple[int, ...] = (100_000, 1_000_000)) -> list[dict[str, Any]]:
    """Per size: batchrun's plan, the two baselines and batchrun's render of every row."""
    out = []
    for answered in sizes:
        with tempfile.TemporaryDirectory(prefix="batchrun-bench-rowpass-") as tmp:
            work = Path(tmp)
            _answered(work, answered)
            (work / "loop.py").write_text(ORJSON_LOOP)
            (work / "duck.py").write_text(DUCKDB_QUERY)
            cli = [sys.executable, "-m", "runner"]
            _measured([*cli, "plan", "--json"], work)  # warm the page cache and the imports
            out.append({"answered": answered, "new": NEW,
                        "plan": _measured([*cli, "plan"], work),
                        "orjson_loop": _measured([sys.executable, "loop.py"], work),
                        "duckdb": _measured([sys.executable, "duck.py"], work),
                        "render": _measured([*cli, "render", "triage"], work)})
    return out


def rowpass_lines(rows: list[dict[str, Any]]) -> list[str]:
    def mb(v: float | None) -> str:
        return "?" if v is None else f"{v:.0f} MB"

    lines = []
    for r in rows:
        plan, loop, duck, render = r["plan"], r["orjson_loop"], r["duckdb"], r["render"]
        head = (f"plan {r['answered']:,} answered + {r['new']:,} new (JSONL, CLI)   batchrun "
                f"{plan['seconds']:.2f} s {mb(plan['mb'])}   orjson loop {loop['seconds']:.2f} s "
                f"{mb(loop['mb'])}   DuckDB query {duck['seconds']:.2f} s {mb(duck['mb'])}   "
                f"render of every row {render['seconds']:.2f} s")
        vs_duck, vs_render = plan["seconds"] / duck["seconds"], plan["seconds"] / render["seconds"]
        if r["answered"] >= 1_000_000:
            met = plan["seconds"] <= PLAN_1M_SECONDS and vs_duck <= PLAN_VS_DUCKDB
            target = (f"target ≤{PLAN_1M_SECONDS} s and ≤{PLAN_VS_DUCKDB}x DuckDB "
                      f"(now {vs_duck:.1f}x)")
        else:
            met = vs_render <= PLAN_VS_RENDER
            target = f"target ≤{PLAN_VS_RENDER}x the render (now {vs_render:.2f}x)"
        lines.append(f"{head}   {target}: {'met' if met else 'MISSED'}")
    return lines

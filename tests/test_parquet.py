"""Parquet as a local source (issue 26, item 4, first half): typed columns read as JSON-friendly
values, a plan and apply like any file, an edited row sent again, an unreadable file one clear
error, and DuckDB loaded only by the commands that read rows."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest

from runner.errors import BatchrunError
from runner.rows.parquet import read_parquet
from runner.rows.records import RowIssue, SourceRow
from tests.conftest import ProjectDir

MANIFEST = """\
apiVersion: batchrun/v1
kind: BatchJob
metadata: {name: notes}
spec:
  model: anthropic/claude-haiku-4-5@20251001
  parameters: {max_tokens: 16}
  source: {file: orders.parquet, id: order_id}
  prompt: {user: "{{ note }} ({{ total }}, {{ placed_at }})"}
  passthrough: [total]
  destination: {file: out/notes.jsonl}
"""


def write_orders(path: Path, notes: list[str], total: str = "129.90::DECIMAL(10,2)") -> None:
    """Orders with a timestamp, a decimal, a list, a note and a score (null, then NaN)."""
    nan = "'nan'::DOUBLE"
    rows = ", ".join(f"('O-{i}', TIMESTAMP '2026-11-02 09:14:00', {total}, ['kettle'], "
                     f"'{note}', {'NULL' if i == 0 else nan})"
                     for i, note in enumerate(notes))
    duckdb.execute(f"COPY (SELECT * FROM (VALUES {rows}) t(order_id, placed_at, total, items, "
                   f"note, score)) TO '{path}' (FORMAT parquet)")


def test_typed_columns_read_as_the_values_a_jsonl_row_holds(tmp_path: Path) -> None:
    write_orders(tmp_path / "o.parquet", ["dent", "wrong size"])
    rows = list(read_parquet(tmp_path / "o.parquet"))
    assert all(isinstance(r, SourceRow) for r in rows)
    first, second = (r.data for r in rows if isinstance(r, SourceRow))
    assert [r.number for r in rows] == [1, 2]
    assert first == {"order_id": "O-0", "placed_at": "2026-11-02T09:14:00", "total": "129.90",
                     "items": ["kettle"], "note": "dent", "score": None}
    assert math.isnan(second["score"])  # NaN stays NaN (fingerprinted apart from null)
    json.dumps(first)  # every value is one JSON can hold


def test_a_row_over_the_limit_is_refused_by_its_number(tmp_path: Path) -> None:
    write_orders(tmp_path / "o.parquet", ["short", "x" * 500])
    rows = list(read_parquet(tmp_path / "o.parquet", limit=300))
    assert isinstance(rows[0], SourceRow) and isinstance(rows[1], RowIssue)
    assert rows[1].number == 2 and "over the limit of 300" in rows[1].message


def test_a_parquet_source_plans_applies_and_sends_only_an_edited_row_again(
        project_dir: ProjectDir, run: Any) -> None:
    project_dir.write("notes.yaml", MANIFEST)
    (project_dir.root / "triage.yaml").unlink()
    write_orders(project_dir.root / "orders.parquet", ["dent", "wrong size", "great"])
    assert "3 rows, 0 done, 3 to do" in run("plan")
    run("apply", "--auto-approve", "--wait", "--poll-interval", "0.1")
    results = [json.loads(x) for x in run("results", "notes", "--format", "jsonl").splitlines()]
    assert {r["custom_id"]: r["total"] for r in results} == {"O-0": "129.90", "O-1": "129.90",
                                                            "O-2": "129.90"}
    assert "3 rows, 3 done, 0 to do" in run("plan")
    write_orders(project_dir.root / "orders.parquet", ["dent", "wrong colour", "great"])
    assert "3 rows, 2 done, 1 to do" in run("plan")


def test_a_name_with_pattern_characters_reads_exactly_that_file(
        project_dir: ProjectDir, run: Any) -> None:
    """Found by the red-team pass: DuckDB read "x[1].parquet" as a pattern (x1.parquet)."""
    project_dir.write("notes.yaml", MANIFEST.replace("orders.parquet", '"x[1].parquet"'))
    (project_dir.root / "triage.yaml").unlink()
    write_orders(project_dir.root / "x[1].parquet", ["mine"])
    write_orders(project_dir.root / "x1.parquet", ["WRONG FILE", "WRONG FILE"])
    out = run("render", "notes")
    assert "mine" in out and "WRONG" not in out


def test_decimals_keep_every_digit_and_an_edit_past_a_float_is_seen(
        project_dir: ProjectDir, run: Any) -> None:
    """Found by the red-team pass: a DECIMAL(38, 2) became a float, so its 17th digit was lost
    from the prompt and an edit there planned nothing."""
    project_dir.write("notes.yaml", MANIFEST)
    (project_dir.root / "triage.yaml").unlink()
    big = "12345678901234567.01::DECIMAL(38,2)"
    write_orders(project_dir.root / "orders.parquet", ["dent"], total=big)
    assert "12345678901234567.01" in run("render", "notes")
    run("apply", "--auto-approve", "--wait", "--poll-interval", "0.1")
    write_orders(project_dir.root / "orders.parquet", ["dent"], total=big.replace(".01", ".02"))
    assert "0 done, 1 to do" in run("plan")


def test_an_instant_reads_the_same_in_every_time_zone(tmp_path: Path) -> None:
    """Found by the red-team pass: a TIMESTAMPTZ was told in the machine's zone, so a colleague
    elsewhere saw every row as edited (and sent it again)."""
    duckdb.execute(f"COPY (SELECT TIMESTAMPTZ '2026-01-01 22:04:05+00' AS at, 'O-1' AS order_id) "
                   f"TO '{tmp_path / 'o.parquet'}' (FORMAT parquet)")
    probe = ("import sys\nfrom pathlib import Path\nfrom runner.rows.parquet import read_parquet\n"
             "print([r.data for r in read_parquet(Path(sys.argv[1]))])")
    seen = {subprocess.run([sys.executable, "-c", probe, str(tmp_path / "o.parquet")],
                           env={**os.environ, "TZ": zone}, capture_output=True, text=True,
                           check=True).stdout for zone in ("UTC", "America/New_York",
                                                           "Asia/Kolkata")}
    assert seen == {"[{'at': '2026-01-01T22:04:05+00:00', 'order_id': 'O-1'}]\n"}


def test_damage_deep_in_the_file_is_the_same_clear_error(tmp_path: Path) -> None:
    """Found by the red-team pass: only opening the file was guarded; a bad page met while
    reading fell through as an unexpected error."""
    path = tmp_path / "o.parquet"
    duckdb.execute(f"COPY (SELECT 'O-' || i AS order_id, md5(i::VARCHAR) || repeat('x', 200) AS "
                   f"note FROM range(200000) t(i)) TO '{path}' (FORMAT parquet, ROW_GROUP_SIZE "
                   f"10000, COMPRESSION snappy)")
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4096] = b"\xff" * 4096
    path.write_bytes(bytes(data))
    with pytest.raises(BatchrunError) as caught:
        for _ in read_parquet(path):
            pass
    assert "o.parquet as Parquet" in str(caught.value)


def test_a_file_that_is_not_parquet_is_one_clear_error(project_dir: ProjectDir, run: Any) -> None:
    project_dir.write("notes.yaml", MANIFEST)
    (project_dir.root / "triage.yaml").unlink()
    (project_dir.root / "orders.parquet").write_text("order_id,note\nO-1,dent\n")
    out = run("plan", code=1)
    assert "cannot read" in out and "orders.parquet as Parquet" in out
    assert "Traceback" not in out


def test_parquet_on_cloud_storage_is_refused_at_its_line(project_dir: ProjectDir, run: Any) -> None:
    project_dir.write("notes.yaml", MANIFEST.replace(
        "source: {file: orders.parquet, id: order_id}",
        'source: {gcs: {uris: ["gs://b/o.parquet"]}, format: parquet, id: order_id}'))
    (project_dir.root / "triage.yaml").unlink()
    out = run("validate", code=1)
    assert "Parquet is read from local files only" in out and "spec.source.format" in out


@pytest.mark.parametrize("command", [["--help"], ["validate"]])
def test_duckdb_loads_only_for_the_commands_that_read_rows(project_dir: ProjectDir,
                                                           command: list[str]) -> None:
    project_dir.write("notes.yaml", MANIFEST)
    write_orders(project_dir.root / "orders.parquet", ["dent"])
    probe = ("import sys\nfrom runner.cli.commands import main\ntry:\n    main(sys.argv[1:])\n"
             "except SystemExit:\n    pass\nprint('duckdb' in sys.modules, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", probe, *command], cwd=project_dir.root,
                          capture_output=True, text=True, check=False)
    assert done.stderr.strip().splitlines()[-1] == "False", done.stderr

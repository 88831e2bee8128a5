"""Issue 26: the row pass of a local JSONL source into a JSONL file as one DuckDB query. A row's
fingerprint is its line's; the stored rows that settle an unchanged line stay in DuckDB, and the
plan sees only the rest. Held to the Python read of the whole ledger, row by row; answers stored
by an older batchrun (values hashed, not lines) or for a row that gained a column are known by
their request and refreshed, free."""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from runner import api
from runner.backends.local.backend import LocalBackend
from runner.errors import RenderError
from runner.ledger.rowpass import classified_rows, read_ledger
from runner.rendering.row import canonical_fingerprint
from runner.rows.linefp import line_fp
from tests.conftest import ProjectDir

WAIT = ("apply", "--auto-approve", "--wait", "--poll-interval", "0.1", "--timeout", "60")
MANIFEST = """\
apiVersion: batchrun/v1
kind: BatchJob
metadata: {name: triage}
spec:
  model: anthropic/claude-haiku-4-5@20251001
  parameters: {max_tokens: 64}
  source: {file: rows.jsonl, id: {column: id, hash: HASH}}
  prompt:
    user: "{{ a }}/{{ b }}"
  passthrough: [a]
  on_change: ON_CHANGE
  destination: {file: out/triage.jsonl}
"""


def _sent(root: Path) -> int:
    log = root / ".batchrun" / "sent.jsonl"
    return len(log.read_text().splitlines()) if log.exists() else 0


def _lines(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def _project(root: Path, rows: list[dict[str, Any]], *, hashed: bool = False,
             forward: bool = False) -> None:
    (root / "batchrun.yaml").write_text("backend: local\nquota: {max_rows_per_job: 1000}\n")
    (root / "triage.yaml").write_text(MANIFEST.replace("HASH", "true" if hashed else "false")
                                      .replace("ON_CHANGE", "forward" if forward else "rerun"))
    (root / "rows.jsonl").write_text(_lines(rows))


def _classes(root: Path) -> tuple[dict[str, str], bool, int] | str:
    """Each row's class as the plan's row pass tells it but those DuckDB settled, whether it read
    the ledger and how many it settled; or the errors, when the source is refused."""
    project = api.load_project(cwd=root)
    manifest, backend = project.manifests[0], LocalBackend(project.settings)
    try:
        ledger = read_ledger(manifest, backend, [], project.settings)
        classes = {r.custom_id: kind.value for r, kind, _ in classified_rows(
            manifest, backend, project.settings, ledger)}
    except RenderError as exc:
        return "\n".join(sorted(d.summary for d in exc.diagnostics))
    return classes, ledger.pushed, ledger.unchanged


def _answer_all(root: Path) -> None:
    """Every row answered by local echo, written by the file store as an apply's collect writes
    it (its sidecar records the rows' passthrough columns: the ledger may be read in DuckDB)."""
    from runner.answers.result import make
    from runner.ledger.rowpass import rendered_rows

    project = api.load_project(cwd=root)
    manifest, backend = project.manifests[0], LocalBackend(project.settings)
    answerer = backend.answerer(manifest.model.resource)
    backend.write_destination(manifest.destination, ((make(
        custom_id=r.custom_id, passthrough={k: r.row.data.get(k) for k in manifest.passthrough},
        ok=True, output="x",
        error=None, usage={"output_tokens": 1}, model=manifest.model.short,
        spec_hash=manifest.spec_hash, request_hash=r.request_hash, job="j", finished_at="t",
        source_fp=r.source_fp, answered_by=answerer), True)
        for r in rendered_rows(manifest, backend, project.settings)), collected=["j"])


_ROW = st.fixed_dictionaries({
    "a": st.one_of(st.none(), st.integers(-3, 3), st.sampled_from([1.0, 2.5, "1", "x", "é"])),
    "b": st.one_of(st.text(max_size=4), st.integers(0, 2), st.lists(st.integers(0, 1),
                                                                      max_size=2)),
})
_EDITS = st.lists(st.tuples(
    st.sampled_from(["set_a", "set_b", "drop", "swap_keys", "add_column", "nan", "duplicate",
                     "blank_line", "crlf", "bom", "bad_json"]),
    st.integers(0, 20), st.one_of(st.none(), st.integers(0, 3), st.just(1.0), st.just("1"))),
    max_size=5)


def _edited(rows: list[dict[str, Any]], edits: list[tuple[str, int, Any]], order: int
            ) -> tuple[list[dict[str, Any]], set[str]]:
    new = [dict(r) for r in rows] + [{"id": "new0", "a": 1, "b": "new"}]
    blank: set[str] = set()
    for kind, index, value in edits:
        target = new[index % len(new)]
        if kind == "drop" and len(new) > 1:
            new.remove(target)
        elif kind == "swap_keys":
            new[index % len(new)] = dict(reversed(list(target.items())))
        elif kind == "add_column":
            target["extra"] = value
        elif kind == "nan":
            target["b"] = math.nan
        elif kind == "duplicate":
            new.append(dict(target))
        elif kind in ("blank_line", "crlf", "bom", "bad_json"):
            blank.add(kind)
        else:
            target[kind[-1]] = value
    k = order % len(new)
    return new[k:] + new[:k], blank


@settings(max_examples=40, deadline=None)
@given(st.lists(_ROW, min_size=1, max_size=6), _EDITS, st.booleans(), st.integers(0, 7))
def test_duckdb_and_python_tell_every_row_alike(
        old: list[dict[str, Any]], edits: list[tuple[str, int, Any]], hashed: bool,
        order: int) -> None:
    """Answer every row, edit the source (values and their types, nulls, NaN, dropped, reordered
    and duplicated rows, swapped keys, a column added, blank lines), then classify each row with the
    ledger read in DuckDB and with the whole ledger read in Python: the same class for every row,
    or the same errors."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "p"
        root.mkdir()
        rows = [{"id": f"r{i}" if not hashed else f"row-{i}" + "x" * 70, **r}
                for i, r in enumerate(old)]
        _project(root, rows, hashed=hashed)
        _answer_all(root)
        new, odd = _edited(rows, edits, order)
        text = _lines(new)
        if "blank_line" in odd:
            text = "\n" + text.replace("\n", "\n  \n", 1)
        if "bad_json" in odd:
            text += '{"id": "broken", \n'
        if "crlf" in odd:  # every line, or only the first
            text = text.replace("\n", "\r\n", -1 if order % 2 else 1)
        (root / "rows.jsonl").write_bytes(("\ufeff" if "bom" in odd else "").encode()
                                          + text.encode())
        in_duckdb = _classes(root)
        # The same project, its destination's sidecar without the record of the rows' columns:
        # the whole ledger is read in Python.
        python_root = Path(tmp) / "q"
        shutil.copytree(root, python_root)
        sidecar = python_root / "out" / ".triage.jsonl.batchrun.json"
        record = orjson.loads(sidecar.read_bytes())
        record.pop("shapes")
        sidecar.write_bytes(orjson.dumps(record))
        in_python = _classes(python_root)
        if isinstance(in_duckdb, str) or isinstance(in_python, str):
            assert in_duckdb == in_python
            return
        assert in_python[1] is False and in_python[2] == 0
        settled = set(in_python[0]) - set(in_duckdb[0])
        assert len(settled) == in_duckdb[2]
        assert {**in_duckdb[0], **dict.fromkeys(settled, "done")} == in_python[0]
        duplicated = len({json.dumps(r) for r in new}) < len(new)
        assert in_duckdb[1] is not duplicated  # a line twice: read whole, to name the rows


_LINE = st.one_of(
    st.builds(json.dumps, _ROW), st.sampled_from(["", "  ", "\t", "[1]", "{bad",
                                                              '{"id": "é"}']),
    st.text(alphabet="ab{}\":, ", max_size=30))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_LINE, st.sampled_from(["\n", "\r\n"])), max_size=12), st.booleans(),
       st.booleans(), st.integers(8, 40))
def test_hashed_lines_are_the_rows_read_jsonl_reads(
        lines: list[tuple[str, str]], bom: bool, last_newline: bool, limit: int) -> None:
    """Every line's fingerprint, number and offset as hash_lines tells them are read_jsonl's (and
    row_at's): blank lines, CRLF, a BOM, a last line without its newline, lines over the limit."""
    import io

    from runner.rows import files as rowfile
    from runner.rows.records import RowIssue, SourceRow

    text = "".join(line + end for line, end in lines)
    if not last_newline and lines:
        text = text[:-len(lines[-1][1])]
    data = ("\ufeff" if bom else "").encode() + text.encode()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.jsonl"
        path.write_bytes(data)
        expected = list(rowfile.read_jsonl(path, limit))
        out = io.BytesIO()
        with path.open("rb") as fh:
            offsets, issues = rowfile.hash_lines(fh, limit, out)
            fps = out.getvalue().decode().split("\n")[:-1]
            long = {i.number: i.message for i in issues}
            assert len(fps) == len(offsets)
            told = {}
            for number, fp in enumerate(fps, start=1):
                if fp or number in long:
                    row = rowfile.row_at(fh, number, offsets[number - 1]) if fp else None
                    told[number] = (fp, row)
        for item in expected:
            if type(item) is SourceRow:
                fp, row = told.pop(item.number)
                assert fp == item.fp and row == item
            elif "bytes long" in item.message:
                assert told.pop(item.number) == ("", None) and long[item.number] == item.message
            else:  # not a row: hashed, and row_at says why as read_jsonl does
                assert told.pop(item.number)[1] == item
        assert told == {}
        assert all(type(i) is RowIssue for i in issues)


def test_a_long_line_is_told_by_its_length_without_its_line_end_wherever_the_reads_cut_it(
        ) -> None:
    """Red-team: a CRLF line over the limit whose \\r fell at hash_lines' read cap was said one
    byte longer than it is (the \\r counted). Lengths around the cap and the drain's chunks."""
    import io

    from runner.rows import files as rowfile

    limit = 10
    for size in [*range(limit + 1, limit + 8), (1 << 16) - 2, (1 << 16) - 1, 1 << 16,
                 (1 << 16) + 1, (1 << 17) + 3]:
        for end in ("\r\n", "\n"):
            data = ('{"a": "' + "x" * (size - 9) + '"}' + end).encode()
            assert len(data) - len(end) == size
            expected = f"is {size:,} bytes long"
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "rows.jsonl"
                path.write_bytes(data + b'{"a": 1}\n')
                read = list(rowfile.read_jsonl(path, limit))
                with path.open("rb") as fh:
                    offsets, issues = rowfile.hash_lines(fh, limit, io.BytesIO())
            assert read[0].message.startswith(expected), (size, end, read[0])  # type: ignore[union-attr]
            assert issues[0].message.startswith(expected), (size, end, issues[0])
            assert list(offsets) == [0, len(data)]


def test_an_unchanged_source_is_settled_in_duckdb_and_only_the_change_is_rendered(
        run, project_dir: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    rows = [{"id": f"r{i}", "a": i, "b": "x"} for i in range(20)]
    _project(project_dir.root, rows)
    run(*WAIT)
    assert _sent(project_dir.root) == 20
    (project_dir.root / "rows.jsonl").write_text(_lines([*rows, {"id": "r20", "a": 20, "b": "y"}]))
    project = api.load_project(cwd=project_dir.root)
    manifest, backend = project.manifests[0], LocalBackend(project.settings)
    ledger = read_ledger(manifest, backend, [], project.settings)
    seen = list(classified_rows(manifest, backend, project.settings, ledger))
    assert ledger.pushed and ledger.unchanged == 20
    assert [(r.custom_id, k.value) for r, k, _ in seen] == [("r20", "to_do")]
    assert "1 to do" in run("plan")
    run(*WAIT)
    assert _sent(project_dir.root) == 21


def test_a_column_added_to_the_source_is_refreshed_once_and_never_sent(
        run, project_dir: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    rows = [{"id": f"r{i}", "a": i, "b": "x"} for i in range(5)]
    _project(project_dir.root, rows)
    run(*WAIT)
    (project_dir.root / "rows.jsonl").write_text(_lines([{**r, "added": 1} for r in rows]))
    shown = run("plan")
    assert "refresh the fingerprints of 5 answers, $0" in shown
    assert "their source rows changed (a column added?)" in shown
    assert "0 to do" in shown
    run(*WAIT)
    assert _sent(project_dir.root) == 5
    stored = [orjson.loads(x) for x in (project_dir.root / "out" / "triage.jsonl").read_bytes()
              .splitlines()]
    lines = (project_dir.root / "rows.jsonl").read_bytes().splitlines()
    assert {r["source_fp"] for r in stored} == {line_fp(x) for x in lines}
    assert "up-to-date" in run("plan") or "up to date" in run("plan")
    project = api.load_project(cwd=project_dir.root)
    ledger = read_ledger(project.manifests[0], LocalBackend(project.settings), [],
                         project.settings)
    assert list(classified_rows(project.manifests[0], LocalBackend(project.settings),
                                project.settings, ledger)) == []
    assert ledger.unchanged == 5  # every row settled without being read


def _older_release(root: Path) -> None:
    """The destination as a batchrun before issue 26 left it: a JSONL row's fingerprint is its
    values', sorted and hashed; no record of the rows' columns."""
    out = root / "out" / "triage.jsonl"
    by_id = {r["id"]: r for r in (json.loads(x) for x in (root / "rows.jsonl").read_text()
                                  .splitlines())}
    stored = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    out.write_bytes(b"".join(orjson.dumps({**r, "source_fp": canonical_fingerprint(
        by_id[r["custom_id"]])}) + b"\n" for r in stored))
    sidecar = root / "out" / ".triage.jsonl.batchrun.json"
    record = orjson.loads(sidecar.read_bytes())
    record.pop("shapes")
    record["stamp"] = [out.stat().st_size, out.stat().st_mtime_ns]
    sidecar.write_bytes(orjson.dumps(record))


def test_answers_of_an_older_release_are_recognised_and_refreshed_without_a_resend(
        run, project_dir: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    rows = [{"id": f"r{i}", "a": i, "b": "x"} for i in range(4)]
    _project(project_dir.root, rows)
    run(*WAIT)
    _older_release(project_dir.root)
    shown = run("plan")
    assert "refresh the fingerprints of 4 answers, $0" in shown
    assert "by an older batchrun, or under on_change: forward" in shown and "0 to do" in shown
    run(*WAIT)
    assert _sent(project_dir.root) == 4
    project = api.load_project(cwd=project_dir.root)
    backend = LocalBackend(project.settings)
    ledger = read_ledger(project.manifests[0], backend, [], project.settings)
    assert list(classified_rows(project.manifests[0], backend, project.settings, ledger)) == []
    assert ledger.pushed and ledger.unchanged == 4


def test_on_change_forward_keeps_older_answers_across_the_upgrade_and_knows_an_edit(
        run, project_dir: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    rows = [{"id": f"r{i}", "a": i, "b": "x"} for i in range(4)]
    _project(project_dir.root, rows, forward=True)
    run(*WAIT)
    _older_release(project_dir.root)
    manifest = project_dir.root / "triage.yaml"
    manifest.write_text(manifest.read_text().replace('"{{ a }}/{{ b }}"', '"{{ a }}: {{ b }}"'))
    edited = [*rows[:3], {**rows[3], "b": "edited"}]
    (project_dir.root / "rows.jsonl").write_text(_lines(edited))
    shown = run("plan")
    # forward hashes values, as the older release did: its fingerprints stand as they are
    assert "1 to do" in shown and "3 kept from older specs" in shown
    assert "refresh the fingerprints" not in shown
    run(*WAIT)
    assert _sent(project_dir.root) == 5  # the edited row alone
    assert "up to date" in run("plan") or "up-to-date" in run("plan")


def test_a_destination_named_like_a_pattern_is_read_as_that_one_file(tmp_path: Path) -> None:
    """Red-team: `out/res[1].jsonl` was read by DuckDB as a pattern, and matched `out/res1.jsonl`,
    another file's answers: rows never sent were settled."""
    rows = [{"id": f"r{i}", "a": i, "b": "x"} for i in range(5)]
    _project(tmp_path, rows)
    manifest = tmp_path / "triage.yaml"
    manifest.write_text(manifest.read_text().replace("out/triage.jsonl", '"out/res[1].jsonl"'))
    _answer_all(tmp_path)  # all 5 answered in out/res[1].jsonl ...
    shutil.copy(tmp_path / "out" / "res[1].jsonl", tmp_path / "out" / "res1.jsonl")
    (tmp_path / "rows.jsonl").write_text(_lines(rows[:2]))
    _answer_all(tmp_path)  # ... then only the first 2 there
    (tmp_path / "rows.jsonl").write_text(_lines(rows))
    found = _classes(tmp_path)
    assert not isinstance(found, str)
    assert found[1] and sorted(k for k, v in found[0].items() if v == "to_do") == ["r2", "r3", "r4"]


def test_a_refresh_never_stamps_an_answer_collected_since_for_another_request(
        run, project_dir: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    """Red-team: the plan knew r1's answer by its request and planned a refresh; the same apply
    first collected a job that answered an edited r1, and the refresh marked that answer as the
    current row's: `1/edited` stood for `1/x` for good, and r1 was never sent again."""
    import time

    rows = [{"id": f"r{i}", "a": i, "b": "x"} for i in range(5)]
    _project(project_dir.root, rows)
    run(*WAIT)
    edited = [dict(r) for r in rows]
    edited[1]["b"] = "edited"
    (project_dir.root / "rows.jsonl").write_text(_lines(edited))
    run("apply", "--auto-approve")  # a job for the edited row, left to finish uncollected
    deadline = time.monotonic() + 60
    while "collect 1 finished job" not in run("plan"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    back = [dict(r) for r in rows]
    back[1]["c"] = 1  # r1 as it was, with a column added: its request is the first one's
    (project_dir.root / "rows.jsonl").write_text(_lines(back))
    run(*WAIT)
    stored = {r["custom_id"]: r for r in (orjson.loads(x) for x in (
        project_dir.root / "out" / "triage.jsonl").read_bytes().splitlines())}
    assert stored["r1"]["output"] == "1/x"
    assert _sent(project_dir.root) == 7
    assert "up to date" in run("plan") or "up-to-date" in run("plan")


def _reformatted(rows: list[dict[str, Any]]) -> str:
    """The same values as another exporter writes them: no spaces, keys in reverse order."""
    return "".join(json.dumps(dict(reversed(r.items())), separators=(",", ":")) + "\n"
                   for r in rows)


def test_on_change_forward_keeps_older_answers_when_the_source_is_only_re_serialised(
        run, project_dir: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    """Red-team: under `on_change: forward` a line's fingerprint could not tell a re-serialised
    source (`jq -c`, other key order) from an edited one, and every kept row was paid again."""
    rows = [{"id": f"r{i}", "a": i, "b": "x"} for i in range(4)]
    _project(project_dir.root, rows, forward=True)
    run(*WAIT)
    manifest = project_dir.root / "triage.yaml"
    manifest.write_text(manifest.read_text().replace('"{{ a }}/{{ b }}"', '"{{ a }}: {{ b }}"'))
    (project_dir.root / "rows.jsonl").write_text(_reformatted(rows))
    assert "4 kept from older specs" in run("plan")
    run(*WAIT)
    assert _sent(project_dir.root) == 4
    edited = [*rows[:3], {**rows[3], "b": "edited"}]
    (project_dir.root / "rows.jsonl").write_text(_lines(edited))
    assert "1 to do" in run("plan")
    run(*WAIT)
    assert _sent(project_dir.root) == 5  # the edited row alone


def test_turning_on_change_forward_on_with_a_new_prompt_keeps_the_answers(
        run, project_dir: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    """The answers of a `rerun` manifest carry their lines' fingerprints; switching to `forward`
    in the same change as the prompt keeps them (known by the line, refreshed to the values')."""
    rows = [{"id": f"r{i}", "a": i, "b": "x"} for i in range(4)]
    _project(project_dir.root, rows)
    run(*WAIT)
    manifest = project_dir.root / "triage.yaml"
    manifest.write_text(manifest.read_text().replace('"{{ a }}/{{ b }}"', '"{{ a }}: {{ b }}"')
                        .replace("on_change: rerun", "on_change: forward"))
    shown = run("plan")
    assert "4 kept from older specs" in shown and "0 to do" in shown
    assert "refresh the fingerprints of 4 answers, $0" in shown
    assert "stored under on_change: rerun, which knows a JSONL row by its line" in shown
    run(*WAIT)
    assert _sent(project_dir.root) == 4
    (project_dir.root / "rows.jsonl").write_text(_reformatted(rows))
    assert "0 to do" in run("plan")
    run(*WAIT)
    assert _sent(project_dir.root) == 4
    manifest.write_text(manifest.read_text().replace("on_change: forward", "on_change: rerun"))
    assert "4 to do" in run("plan")  # rerun: the older spec's answers are re-run, as asked

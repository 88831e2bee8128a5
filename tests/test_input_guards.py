"""Issue 22, item 6: what YAML reads that a manifest cannot mean (keys that are not text, .nan and
.inf) is a located error, never a TypeError or a budget switched off; `batchrun init` writes nothing
through a link planted in FOLDER."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.cli import commands as cli
from runner.project import scaffold
from tests.conftest import ProjectDir


def _init(folder: Path) -> tuple[int, str]:
    """`batchrun init proj` run from the folder above proj (paths in messages are relative)."""
    result = CliRunner().invoke(cli.main, ["init", str(folder.relative_to(folder.parent))])
    return result.exit_code, result.stdout + result.stderr


# --- keys that are not text, numbers that are not finite -----------------------------------------

@pytest.mark.parametrize(("labels", "said"), [
    ("{true: x}", "Error: key true is a boolean in YAML, not text\n"
                  "  in triage.yaml, line 5, at metadata.labels.true\n"
                  '  Hint: quote it: "true"\n'),
    ("{1: x}", "Error: key 1 is a number in YAML, not text\n"
               "  in triage.yaml, line 5, at metadata.labels.1\n"
               '  Hint: quote it: "1"\n'),
    ("{null: x}", "Error: key null is null in YAML, not text\n"
                  "  in triage.yaml, line 5, at metadata.labels.null\n"
                  '  Hint: quote it: "null"\n'),
])
def test_a_label_key_that_is_not_text_is_a_located_error(run, project_dir: ProjectDir, labels: str,
                                                        said: str) -> None:  # type: ignore[no-untyped-def]
    root = project_dir.root
    project_dir.write("triage.yaml", (root / "triage.yaml").read_text().replace(
        "  name: triage\n", f"  name: triage\n  labels: {labels}\n"))
    for command in ("validate", "plan"):
        assert run(command, code=1) == said


def test_a_quoted_key_passed_before_does_not_let_the_bare_one_through(run, project_dir: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    """The schema's known-valid cache digests the data: `"true":` and `true:` must not share it."""
    root = project_dir.root
    text = (root / "triage.yaml").read_text()
    project_dir.write("triage.yaml", text.replace("  name: triage\n", '  name: triage\n  labels: {"true": x}\n'))
    run("validate")
    project_dir.write("triage.yaml", text.replace("  name: triage\n", "  name: triage\n  labels: {true: x}\n"))
    assert "key true is a boolean in YAML" in run("validate", code=1)


@pytest.mark.parametrize("value", [".nan", ".NaN", ".inf", "-.inf"])
def test_max_cost_must_be_finite_in_a_manifest(run, project_dir: ProjectDir, value: str) -> None:  # type: ignore[no-untyped-def]
    root = project_dir.root
    project_dir.write("triage.yaml", (root / "triage.yaml").read_text().replace(
        "  max_attempts: 2\n", f"  max_attempts: 2\n  max_cost: {value}\n"))
    out = run("plan", code=1)
    assert "Error: must be a finite number (got" in out
    assert "in triage.yaml, line 14, at spec.max_cost" in out
    assert not (root / ".batchrun" / "jobs").exists()


def test_a_finite_max_cost_still_holds(run, project_dir: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    root = project_dir.root
    project_dir.write("triage.yaml", (root / "triage.yaml").read_text().replace(
        "  max_attempts: 2\n", "  max_attempts: 2\n  max_cost: 0.0000001\n"))
    assert "over budget" in run("plan", code=4)


# --- init and planted links ----------------------------------------------------------------------

@pytest.fixture
def planted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A FOLDER to init and, beside it, a folder outside it with a file a link points at."""
    monkeypatch.chdir(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("precious\n")
    folder = tmp_path / "proj"
    folder.mkdir()
    return folder, outside


def _tree(folder: Path) -> dict[str, bytes | str]:
    return {str(p.relative_to(folder)): (str(p.readlink()) if p.is_symlink() else p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_symlink() or p.is_file()}


@pytest.mark.parametrize(("link", "target"), [
    (".gitignore", "../outside/victim.txt"),
    ("manifests", "../outside"),
    ("batchrun.yaml", "../outside/new.yaml"),  # dangling: it would create the file outside
    (".github", "../outside"),
])
def test_init_writes_nothing_through_a_planted_link(planted: tuple[Path, Path], link: str,
                                                    target: str, golden) -> None:  # type: ignore[no-untyped-def]
    folder, outside = planted
    (folder / link).symlink_to(target)
    inside, beside = _tree(folder), _tree(outside)
    code, out = _init(folder)
    assert code == 1, out
    assert f"init writes nothing through a link, and these are links in proj: {link} (-> {target})" in out
    assert (outside / "victim.txt").read_text() == "precious\n"
    assert _tree(outside) == beside and _tree(folder) == inside  # nothing written anywhere
    if link == ".gitignore":
        golden("init/planted-link.txt", out)


def test_init_refuses_a_gitignore_with_other_hard_links(planted: tuple[Path, Path]) -> None:
    folder, outside = planted
    (folder / ".gitignore").hardlink_to(outside / "victim.txt")
    code, out = _init(folder)
    assert code == 1 and ".gitignore (a file with other hard links)" in out
    assert (outside / "victim.txt").read_text() == "precious\n"


def test_a_link_planted_after_the_check_is_not_followed(planted: tuple[Path, Path]) -> None:
    """The writes themselves follow no link (O_NOFOLLOW at every step), whatever the check saw."""
    import errno
    import os

    folder, outside = planted
    (folder / "manifests").symlink_to(outside)
    root = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(OSError) as info:
            scaffold._open_below(root, Path("manifests/x.yaml"), os.O_WRONLY | os.O_CREAT)
        assert info.value.errno in (errno.ELOOP, errno.ENOTDIR)
    finally:
        os.close(root)
    assert sorted(p.name for p in outside.iterdir()) == ["victim.txt"]


def test_init_still_appends_to_a_real_gitignore(planted: tuple[Path, Path]) -> None:
    folder, _ = planted
    (folder / ".gitignore").write_text("node_modules/")
    code, out = _init(folder)
    assert code == 0, out
    assert (folder / ".gitignore").read_text() == (
        "node_modules/\n# batchrun: local job state and results\n.batchrun/\nout/\n")
    assert (folder / "manifests" / "review-sentiment.yaml").is_file()


# --- a source row longer than a request may be ---------------------------------------------------

LIMIT = 1_000_000


def _big_line(path: Path, mb: int, *, before: bytes = b"", after: bytes = b"",
              head: bytes = b'{"id": "big", "text": "', tail: bytes = b'"}\n') -> None:
    chunk = b"x" * (1 << 20)
    with path.open("wb") as fh:
        fh.write(before + head)
        for _ in range(mb):
            fh.write(chunk)
        fh.write(tail + after)


def _read(path: Path, fmt: str, limit: int) -> list[tuple[int, str]]:
    from runner.rows import files as rowfile
    from runner.rows.records import RowIssue

    return [(i.number, i.message) if isinstance(i, RowIssue) else (i.number, str(i.data.get("id")))
            for i in rowfile.read_rows(path, fmt, limit)]


def test_a_long_jsonl_line_is_refused_as_it_is_read_and_the_rest_is_read(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    _big_line(path, 8, before=b'{"id": "a"}\n', after=b'{"id": "b"}\r\n{"id": "c"}')
    assert _read(path, "jsonl", LIMIT) == [
        (1, "a"),
        (2, "is 8,388,633 bytes long, more than a request may be (1,000,000, "
            "quota.max_request_bytes); skipped without reading it"),
        (3, "b"), (4, "c")]


def test_the_limit_is_the_line_without_its_newline(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    exact = b'{"id": "' + b"x" * 92 + b'"}'  # 102 bytes
    path.write_bytes(exact + b"\r\n" + exact + b"y\n" + exact)
    got = _read(path, "jsonl", 102)
    assert [n for n, _ in got] == [1, 2, 3] and got[0][1] == got[2][1] == "x" * 92
    assert got[1][1].startswith("is 103 bytes long")


def test_a_long_csv_line_that_closes_its_quotes_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    _big_line(path, 3, before=b"id,text\na,one\n", head=b'big,"', tail=b'"\n', after=b"b,two\n")
    got = _read(path, "csv", LIMIT)
    assert [n for n, _ in got] == [2, 3, 4] and got[0][1] == "a" and got[2] == (4, "b")
    assert got[1][1].startswith("is 3,145,734 bytes long, more than a request may be")


def test_a_long_csv_line_that_opens_a_quoted_field_ends_the_reading(tmp_path: Path) -> None:
    """Its record goes on below: what follows cannot be told apart from it, so nothing is guessed."""
    path = tmp_path / "rows.csv"
    _big_line(path, 3, before=b"id,text\na,one\n", head=b'big,"', tail=b'\nstill big"\n',
              after=b"b,two\n")
    assert _read(path, "csv", LIMIT) == [
        (2, "a"),
        (3, "is a CSV record of more than 1,000,000 bytes, more than a request may be "
            "(quota.max_request_bytes); nothing after it was read")]


def test_a_csv_record_over_the_limit_in_short_lines_ends_the_reading(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_bytes(b'id,text\na,one\nbig,"' + b"line\n" * 400 + b'"\nb,two\n')
    got = _read(path, "csv", 1000)
    assert got == [(2, "a"), (3, "is a CSV record of more than 1,000 bytes, more than a request "
                                 "may be (quota.max_request_bytes); nothing after it was read")]


def test_a_csv_header_over_the_limit_reads_no_row(tmp_path: Path) -> None:
    from runner.rows import files as rowfile

    path = tmp_path / "rows.csv"
    path.write_bytes(b"id," + b"c" * 2000 + b"\na,one\n")
    assert [n for n, _ in _read(path, "csv", 1000)] == [1]
    assert rowfile.discover_columns(path, "csv", 1000) is None


def test_rows_under_the_limit_read_as_before(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_bytes(b'\xef\xbb\xbfid,text\r\n1,"two\r\nlines"\r\n\r\n3,three\r\n')
    assert _read(path, "csv", 1000) == [(2, "1"), (5, "3")]
    assert _read(path, "csv", 1000) == [(n, i) for n, i in _read(path, "csv", 10**9)]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_reading_a_64_mb_row_holds_a_small_multiple_of_the_limit(tmp_path: Path, fmt: str) -> None:
    """Python's own allocations, counted (tracemalloc): the long row is never held."""
    import tracemalloc

    from runner.rows import files as rowfile

    path = tmp_path / f"rows.{fmt}"
    if fmt == "csv":
        _big_line(path, 64, before=b"id,text\na,one\n", head=b'big,"', tail=b'"\n', after=b"b,two\n")
    else:
        _big_line(path, 64, before=b'{"id": "a"}\n', after=b'{"id": "b"}\n')
    tracemalloc.start()
    try:
        rows = list(rowfile.read_rows(path, fmt, LIMIT))
        columns = rowfile.discover_columns(path, fmt, LIMIT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(rows) == 3 and columns is not None
    assert peak < 3 * LIMIT, f"peak {peak:,} bytes"


@pytest.mark.parametrize("command", ["plan", "validate"])
def test_plan_and_validate_on_a_64_mb_row_hold_a_small_multiple_of_the_limit(
        run, project_dir: ProjectDir, command: str) -> None:  # type: ignore[no-untyped-def]
    """The whole command in this process, against the same command on the row made small."""
    import tracemalloc

    root = project_dir.root
    project_dir.write("batchrun.yaml", f"backend: local\nquota: {{max_request_bytes: {LIMIT}}}\n")
    project_dir.write("triage.yaml", (root / "triage.yaml").read_text()
                      .replace("file: tickets.csv, id: ticket_id", "file: rows.jsonl, id: id")
                      .replace('"{{ subject }}: {{ body }}"', '"{{ text }}"')
                      .replace("passthrough: [subject]", "passthrough: []"))
    peaks = []
    for mb in (0, 0, 64):  # once to warm caches and imports, then the baseline, then the long row
        _big_line(root / "rows.jsonl", mb, before=b'{"id": "a", "text": "x"}\n')
        tracemalloc.start()
        try:
            out = run(command, code=1 if command == "plan" and mb else 0)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        peaks.append(peak)
    assert command == "validate" or "row 2: is 67,108,889 bytes long" in out
    assert peaks[2] < peaks[1] + 3 * LIMIT, f"peaks {peaks}"

"""Issue 16 (fourth part): `batchrun report` writes one self-contained HTML file, checked in a real
headless Chromium (Debian's package) after its scripts ran: search, status filter, paging and a row's
details, on 10,000 rows in `make test` and on 100,000 in `make soak` (the `slow` mark). A screenshot is kept in build/test-output/ for review."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ProjectDir

REPO = Path(__file__).resolve().parent.parent
SHOTS = REPO / "build" / "test-output"
# make test reads the page at 10,000 rows; make soak (pytest -m slow) at 100,000, ~9 s a load.
SIZES = [10_000, pytest.param(100_000, marks=pytest.mark.slow, id="100k")]
LABELS = ("refund", "bug", "question", "feature")


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("headless Chromium is not installed (`apt-get install chromium`; make test "
                    "installs it when it runs as root with apt)")
    return found


def _browser(url: str, *flags: str, cwd: Path) -> str:
    """Chromium run headless on `url`; what it printed. Stopped with its children if it hangs."""
    proc = subprocess.Popen(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={cwd / 'chromium-profile'}", *flags, url],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=cwd, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return out.decode("utf-8", "replace")


def _dom(page: Path, hash_: str = "") -> str:
    return _browser(page.as_uri() + hash_, "--dump-dom", cwd=page.parent)


def _text(dom: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', dom)
    assert found, f"no #{element_id} in the page"
    return found.group(1).strip()


def _row_ids(dom: str) -> list[str]:
    return re.findall(r'<tr data-id="([^"]+)"', dom)


def _project(root: Path, source: str, id_column: str, user: str, passthrough: str) -> None:
    p = ProjectDir(root)
    p.write("batchrun.yaml", "backend: local\n")
    p.write("triage.yaml", f"""\
        apiVersion: batchrun/v1
        kind: BatchJob
        metadata: {{name: triage}}
        spec:
          model: anthropic/claude-haiku-4-5@20251001
          parameters: {{max_tokens: 8}}
          source: {{file: {source}, id: {id_column}}}
          prompt: {{user: "{user}"}}
          passthrough: [{passthrough}]
          destination: {{file: out/triage.jsonl}}
        """)


def _batchrun(root: Path, *args: str) -> str:
    """The command as a user runs it, in `root`; its output."""
    done = subprocess.run([sys.executable, "-m", "runner", *args], cwd=root, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module", params=SIZES)
def report(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`rows` stored rows (a few failed, some answered under an older spec) and their source."""
    rows = int(request.param)
    root = tmp_path_factory.mktemp("report")
    _project(root, "tickets.csv", "ticket_id", "Label this ticket: {{ body }}", "subject")
    with (root / "tickets.csv").open("w") as f:
        f.write("ticket_id,subject,body\n")
        for i in range(rows):
            f.write(f"T{i},{LABELS[i % 4]},ticket body {i} <script>alert(1)</script>\n")
    from runner import api

    spec = api.load_project(cwd=root).manifest("triage").spec_hash
    (root / "out").mkdir()
    with (root / "out" / "triage.jsonl").open("w") as f:
        for i in range(rows):
            failed = i % 1000 == 7
            f.write(json.dumps({
                "custom_id": f"T{i}", "status": "failed" if failed else "succeeded",
                "output": None if failed else LABELS[(i * 7) % 4],
                "error": "max_tokens too small" if failed else None, "attempts": 1,
                "request_hash": f"h{i}",
                "usage": {"input_tokens": 20, "output_tokens": 2},
                "spec_hash": "0ld5pec" if i % 10 == 3 else spec,
                "finished_at": f"2026-11-{10 + i % 3}T10:00:00Z", "subject": LABELS[i % 4]}) + "\n")
    assert f"Wrote report.html ({rows:,} rows)" in _batchrun(root, "report", "triage", "-o",
                                                            "report.html")
    return root / "report.html"


def test_the_report_is_one_file_that_asks_for_nothing(report: Path) -> None:
    page = report.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<script>alert(1)</script>" not in page  # the rows are data, never markup


def test_the_table_pages_searches_and_filters_after_its_scripts_ran(report: Path) -> None:
    """Each load is one state a user reaches by typing, choosing and paging (the page keeps its
    view in the address, so a link shows the same rows): ~9 s a load at 100,000 rows here."""
    total = sum(1 for line in report.with_name("tickets.csv").open()) - 1
    failed, stale = total // 1000, total // 10  # i % 1000 == 7 and i % 10 == 3 never meet
    dom = _dom(report)
    assert _text(dom, "count") == f"{total:,} of {total:,} rows"
    assert _text(dom, "page") == f"page 1 of {total // 100:,}"
    assert _row_ids(dom) == [f"T{i}" for i in range(100)]
    assert f"<b>{total:,}</b>rows in the destination" in dom
    assert f"<b>{total - failed - stale:,}</b>answered" in dom
    assert f"<b>{failed:,}</b>failed" in dom and f"<b>{stale:,}</b>stale (older spec)" in dom
    assert "Answers by label" in dom and "Cost by day (USD)" in dom

    dom = _dom(report, "#status=stale&page=3")  # answered under an older spec, third page
    assert _text(dom, "count") == f"{stale:,} of {total:,} rows"
    assert _text(dom, "page") == f"page 3 of {stale // 100:,}"
    assert _row_ids(dom)[:2] == ["T2003", "T2013"]

    dom = _dom(report, "#q=T4242&open=T4242")  # a search, and a row's details
    found = [f"T{i}" for i in range(total) if str(i).startswith("4242")]
    assert _row_ids(dom)[:2] == found[:2] and _text(dom, "count") == f"{len(found)} of {total:,} rows"
    assert "Label this ticket: ticket body 4242" in dom  # its prompt, on demand
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom  # shown as text, never run


def test_a_screenshot_for_review(report: Path) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    rows = sum(1 for line in report.with_name("tickets.csv").open()) - 1
    shot = SHOTS / f"report-{rows // 1000}k.png"
    _browser(report.as_uri() + "#status=failed", f"--screenshot={shot}",
             "--window-size=1280,1100", cwd=report.parent)
    assert shot.stat().st_size > 10_000


def test_answers_written_to_hurt_stay_text(tmp_path: Path) -> None:
    """Red-team finds: an answer saying `__DATA__` moved the rows into the page as markup (and
    its `<img onerror>` ran); `<!--<script` in a cell swallowed the page's script."""
    _project(tmp_path, "t.csv", "id", "{{ body }}", "prompt")
    hostile = ["__DATA__", "<img src=x onerror=document.title=666>", "<!--<script>",
               "</script><script>document.title=667</script>", '"q" & \'s\' ü 🙂', "__TITLE__"]
    (tmp_path / "t.csv").write_text("id,body,prompt\n" + "".join(
        f'a{i},"{h.replace(chr(34), chr(34) * 2)}",x\n' for i, h in enumerate(hostile)))
    _batchrun(tmp_path, "apply", "--auto-approve", "--wait", "--poll-interval", "0.1")
    _batchrun(tmp_path, "report", "triage", "-o", "r.html")
    dom = _dom(tmp_path / "r.html")
    assert "<title>batchrun report: triage</title>" in dom
    assert 'data-ready="1"' in dom and _text(dom, "count") == "6 of 6 rows"
    assert "<img" not in dom.split('id="data"')[0].split("<tbody")[1]  # cells hold text only
    assert "prompt (column)" in dom  # a column named like the report's own is told apart

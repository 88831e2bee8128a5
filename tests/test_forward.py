"""Issue 16 (second part): `on_change: forward` — a new request spec applies to new and edited rows
only; older answers stay with the spec they were made under until `retry --older-specs`."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import ProjectDir


def _sent(root: Path) -> list[str]:
    import json

    log = root / ".batchrun" / "sent.jsonl"
    return [json.loads(line)["custom_id"] for line in log.read_text().splitlines()]


def test_forward_keeps_older_answers_and_sends_only_new_and_edited_rows(
        run, project_dir: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    root = project_dir.root
    run("apply", "--auto-approve", "--wait", "--poll-interval", "0.2")
    assert sorted(_sent(root)) == ["T1", "T2", "T3", "T4", "T5"]
    manifest = root / "triage.yaml"
    manifest.write_text(manifest.read_text().replace(
        "system: Classify the ticket.", "system: Classify the ticket, in one word.").replace(
        "max_attempts: 2", "max_attempts: 2\n  on_change: forward"))
    tickets = root / "tickets.csv"
    tickets.write_text(tickets.read_text().replace("Where is my refund?", "Where is my refund??")
                       + "T6,New,A new ticket\n")
    shown = run("plan")
    assert "create: 2 rows in 1 job" in shown  # T4 (edited) and T6 (new), not the other four
    assert "6 rows, 4 done (4 kept from older specs), 2 to do" in shown
    run("apply", "--auto-approve", "--wait", "--poll-interval", "0.2")
    assert sorted(_sent(root)) == ["T1", "T2", "T3", "T4", "T4", "T5", "T6"]
    results = run("results", "triage")
    assert "6 rows, 0 failed, 4 stale" in results  # the kept answers, with their spec shown
    out = run("retry", "triage", "--older-specs", "--limit", "1")
    assert "1 answer from older specs to be re-run" in out
    # issue 24: a row answered under an older spec, sent again, is a re-run (`~`), not a create
    assert "re-run 1 row (spec changed: prompt), in 1 job" in run("plan")
    run("apply", "--auto-approve", "--wait", "--poll-interval", "0.2")
    assert len(_sent(root)) == 8  # exactly the one asked for
    assert "3 kept from older specs" in run("plan")

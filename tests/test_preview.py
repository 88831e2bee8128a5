"""Issue 16 (third part): a preview runs the changed spec on a sample of answered rows, keeps those
answers for the new spec (never paid twice), and shows old beside new. Counted at the executor."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from runner.answers.compare import Kind, Pair, compare, word_diff
from runner.preview.sample import sample
from tests.conftest import ProjectDir

TICKETS = "ticket_id,subject,body\n" + "".join(
    f"T{i},{('refund', 'bug', 'question', 'feature')[i * 7 % 4]},body number {i}\n"
    for i in range(1, 41))

MANIFEST = """\
apiVersion: batchrun/v1
kind: BatchJob
metadata: {name: triage}
spec:
  model: anthropic/claude-haiku-4-5@20251001
  parameters: {max_tokens: 64}
  source: {file: tickets.csv, id: ticket_id}
  prompt:
    user: "PROMPT"
  destination: {file: out/triage.jsonl}
"""
OLD = "{{ subject }}"
NEW = "{{ 'defect' if subject == 'bug' else subject }}"  # changes the bug rows' requests only


def _sent(root: Path) -> Counter[str]:
    log = root / ".batchrun" / "sent.jsonl"
    lines = log.read_text().splitlines() if log.exists() else []
    return Counter(json.loads(line)["custom_id"] for line in lines)


def _answers(root: Path) -> dict[str, str]:
    lines = (root / "out" / "triage.jsonl").read_text().splitlines()
    return {r["custom_id"]: r["output"] for r in map(json.loads, lines)}


@pytest.fixture
def changed(run, project_dir: ProjectDir) -> ProjectDir:  # type: ignore[no-untyped-def]
    """Forty answered tickets, then a prompt edit that changes the ten `bug` rows' requests."""
    project_dir.write("tickets.csv", TICKETS)
    project_dir.write("triage.yaml", MANIFEST.replace("PROMPT", OLD))
    run("apply", "--auto-approve", "--wait", "--poll-interval", "0.1")
    assert sum(_sent(project_dir.root).values()) == 40
    project_dir.write("triage.yaml", MANIFEST.replace("PROMPT", NEW))
    return project_dir


def test_a_preview_then_apply_sends_exactly_the_rest(run, changed: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    out = run("preview", "triage", "-n", "4")
    assert "4 rows sampled of 4 asked; 4 rows sent now" in out
    assert "bug → defect: 4  (moved)" in out
    previewed = {k for k, v in _sent(changed.root).items() if v == 2}
    assert len(previewed) == 4
    assert "triage" not in {k for k, v in _sent(changed.root).items() if v > 2}
    assert "nothing sent now, $0" in run("preview", "triage", "-n", "4")  # asked again: unpaid
    plan = run("plan")
    assert "6 to do" in plan and "30 to reshape" in plan
    run("apply", "--auto-approve", "--wait", "--poll-interval", "0.1")
    sent = _sent(changed.root)
    assert sum(sent.values()) == 40 + 10  # the ten changed rows, each sent once under the new spec
    assert all(count == 2 for count in (sent[k] for k in previewed))
    answers = _answers(changed.root)
    assert Counter(answers.values())["defect"] == 10 and "bug" not in answers.values()
    assert "up-to-date" in run("plan")


def test_the_old_spec_never_collects_a_preview(run, changed: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    """A pull request previews; main, still on the old spec, applies: the preview's answers are
    not merged (they are another spec's) and nothing is sent; once merged, they count."""
    run("preview", "triage", "-n", "3")
    before = _answers(changed.root)
    changed.write("triage.yaml", MANIFEST.replace("PROMPT", OLD))
    assert "up-to-date" in run("plan")
    run("apply", "--auto-approve", "--wait", "--poll-interval", "0.1")
    assert _answers(changed.root) == before and sum(_sent(changed.root).values()) == 43
    changed.write("triage.yaml", MANIFEST.replace("PROMPT", NEW))
    assert "7 to do" in run("plan")
    run("apply", "--auto-approve", "--wait", "--poll-interval", "0.1")
    assert sum(_sent(changed.root).values()) == 50


def test_plan_preview_as_markdown(run, changed: ProjectDir, golden) -> None:  # type: ignore[no-untyped-def]
    golden("preview/plan-markdown.md", run("plan", "--preview", "5", "--format", "markdown"))
    doc = json.loads(run("plan", "--preview", "5", "--json"))
    (preview,) = doc["previews"]
    assert (preview["state"], preview["sent"], preview["reused"]) == ("done", 0, 5)
    assert preview["comparison"]["transitions"] == [{"old": "bug", "new": "defect", "rows": 5}]


def test_a_preview_over_max_cost_sends_nothing(run, changed: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    text = (changed.root / "triage.yaml").read_text()
    changed.write("triage.yaml", text.replace("  parameters:", "  max_cost: 0.0000001\n  parameters:"))
    out = run("preview", "triage", "-n", "5", code=4)  # a budget refusal, as plan's
    assert "nothing was sent" in out and "max_cost" in out
    assert sum(_sent(changed.root).values()) == 40


def test_a_new_manifest_previews_its_first_rows(run, project_dir: ProjectDir,  # type: ignore[no-untyped-def]
                                               golden) -> None:
    """Issue 24: `preview` could not try a brand-new manifest on a few rows ("nothing to
    compare"). Now it runs them, shows their answers, and apply pays for none of them again."""
    root = project_dir.root
    project_dir.write("tickets.csv", TICKETS)
    project_dir.write("triage.yaml", MANIFEST.replace("PROMPT", OLD))
    out = run("preview", "triage", "-n", "5")
    assert "5 rows sampled of 5 asked; 5 rows sent now" in out
    assert "no row had an answer yet: the first answers under this spec" in out
    shown = [line for line in out.splitlines() if line.startswith("  T")]
    assert len(shown) == 5 and all(line.split(": ", 1)[1] in {"refund", "bug", "question",
                                                             "feature"} for line in shown), out
    golden("preview/first-look.txt", out)
    first = dict(_sent(root))
    assert sum(first.values()) == 5
    again = run("preview", "triage", "-n", "5")  # the same rows: their answers are reused
    assert "nothing sent now" in again and dict(_sent(root)) == first
    doc = json.loads(run("preview", "triage", "-n", "5", "--format", "json"))
    assert doc["first"] is True and doc["state"] == "done"
    run("apply", "--auto-approve", "--wait", "--poll-interval", "0.1")
    assert sum(_sent(root).values()) == 40 and set(_sent(root).values()) == {1}  # none twice
    assert "nothing to compare" in run("preview", "triage")  # every row answered, this spec's
    assert sum(_sent(root).values()) == 40


def test_nothing_to_compare_when_every_answer_is_the_specs(run, project_dir: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    run("apply", "--auto-approve", "--wait", "--poll-interval", "0.1")
    sent = sum(_sent(project_dir.root).values())
    assert "nothing to compare" in run("preview", "triage")
    assert sum(_sent(project_dir.root).values()) == sent


def test_json_answers_are_compared_field_by_field() -> None:
    pairs = [Pair("a", {"label": "bug", "score": 1}, {"label": "defect", "score": 1}),
             Pair("b", {"label": "ok", "score": 2}, {"label": "ok", "score": 3}),
             Pair("c", {"label": "ok", "score": 2}, {"label": "ok", "score": 2}),
             Pair("d", {"label": "ok"}, None, "refused")]
    c = compare(pairs)
    assert (c.kind, c.rows, c.changed, c.refused) == (Kind.JSON, 3, 2, 1)
    assert c.fields == (("label", 1), ("score", 1))
    assert [e.custom_id for e in c.examples] == ["a", "b"]


def test_long_text_gets_a_word_diff() -> None:
    old = "The customer was charged twice for the same order and wants a refund soon."
    new = "The customer was billed twice for one order and wants a refund soon."
    c = compare([Pair("x", old, new)])
    assert c.kind is Kind.TEXT
    ops = [(op, t) for op, t in c.examples[0].diff if op != "="]
    assert ops == [("-", "charged"), ("+", "billed"), ("-", "the same"), ("+", "one")]
    assert "".join(t for op, t in word_diff(old, new) if op != "+") == old


def test_a_label_sample_gives_every_label_its_share_and_is_stable() -> None:
    old = {f"r{i}": ("common" if i % 10 else "rare") for i in range(1000)}
    picked = sample(old, 20)
    assert len(picked) == 20 and picked == sample(old, 20)
    counts = Counter(old[i] for i in picked)
    assert counts == {"common": 18, "rare": 2}
    assert sample({"a": "x"}, 5) == ["a"]
    few = sample({f"r{i}": f"label{i % 7}" for i in range(70)}, 3)  # fewer rows than labels
    assert len(few) == 3


def test_rows_refused_under_the_new_spec_are_not_paid_for_again(run, changed: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    """A red-team find: each preview re-sent the rows the new spec got no answer for."""
    bugs = [f"T{i}" for i in range(1, 41) if i * 7 % 4 == 1]  # the rows the edit changed
    (changed.root / "batchrun.yaml").write_text(
        (changed.root / "batchrun.yaml").read_text()
        + f"local: {{executor: {{type: echo, fail_ids: {json.dumps(bugs)}}}}}\n")
    out = run("preview", "triage", "-n", "4", code=1)
    assert "refused under the new spec:" in out and "no sampled row was answered" in out
    paid = sum(_sent(changed.root).values())
    out = run("preview", "triage", "-n", "4", code=1)
    assert sum(_sent(changed.root).values()) == paid  # asked again: nothing sent
    assert "nothing sent now" in out


def test_the_projects_max_cost_holds_over_all_previews(run, changed: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    """A red-team find: the project's max_cost was checked per preview, not over their total."""
    changed.write("other.yaml", MANIFEST.replace("PROMPT", OLD).replace("name: triage",
                  "name: other").replace("out/triage.jsonl", "out/other.jsonl"))
    run("apply", "--auto-approve", "--wait", "--poll-interval", "0.1", "--target", "other")
    changed.write("other.yaml", MANIFEST.replace("PROMPT", NEW).replace("name: triage",
                  "name: other").replace("out/triage.jsonl", "out/other.jsonl"))
    paid = sum(_sent(changed.root).values())
    one = json.loads(run("preview", "triage", "-n", "5", "--format", "json", code=0))
    cost = one["estimate"]["cost_usd"]
    assert cost and one["sent"] == 5
    # Room for one more preview of 5 rows, not for two.
    (changed.root / "batchrun.yaml").write_text(
        (changed.root / "batchrun.yaml").read_text() + f"max_cost: {cost * 1.5}\n")
    out = run("plan", "--preview", "10", code=4)
    assert "the previews together would cost" in out and "nothing was sent" in out
    assert sum(_sent(changed.root).values()) == paid + 5


def test_plan_preview_shows_a_preview_whose_rows_are_all_answered(run, changed: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    run("preview", "triage", "-n", "50")  # all ten changed rows
    out = run("plan", "--preview", "5")
    assert "bug → defect: 5" in out and "nothing sent now" in out


def test_a_preview_of_a_spec_never_applied_goes_after_the_retention(run, changed: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    """It would never be collected, so gc removes it like a collected job's leftovers."""
    run("preview", "triage", "-n", "3")
    (changed.root / "batchrun.yaml").write_text(
        (changed.root / "batchrun.yaml").read_text() + "retention: 0\n")
    changed.write("triage.yaml", MANIFEST.replace("PROMPT", OLD))
    assert "(preview)" in run("status")
    out = run("gc")
    assert "triage: removed" in out and "(preview)" not in run("status")
    changed.write("triage.yaml", MANIFEST.replace("PROMPT", NEW))
    assert "10 to do" in run("plan")  # its answers went with it


def test_a_shaping_only_change_has_nothing_to_preview(run, changed: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    changed.write("triage.yaml", MANIFEST.replace("PROMPT", OLD).replace(
        "  destination:", "  passthrough: [subject]\n  destination:"))
    out = run("preview", "triage")
    assert "nothing to compare" in out and sum(_sent(changed.root).values()) == 40

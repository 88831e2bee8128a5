"""One project wherever you stand (issue 12): the project is found from the manifests given, walking
up to the nearest batchrun.yaml, never from the folder a command runs in. Run through the batchrun
command from the project, its parent, a sibling and the filesystem root."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runner import api
from tests.conftest import SETTINGS, TICKETS, TRIAGE


def batchrun(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("BATCHRUN_") or k == "BATCHRUN_RECORD_SENT"}
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=120, check=False,
                          env={**env, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A user's repository: batchrun.yaml at the top, manifests and data below."""
    root = tmp_path / "work" / "repo"
    (root / "manifests").mkdir(parents=True)
    (root / "batchrun.yaml").write_text(SETTINGS)
    (root / "manifests" / "tickets.csv").write_text(TICKETS)
    (root / "manifests" / "triage.yaml").write_text(TRIAGE)
    (tmp_path / "work" / "sibling").mkdir()
    return root


WAIT = ("apply", "--auto-approve", "--wait", "--poll-interval", "0.1", "--timeout", "60")


def test_standing_in_the_wrong_folder_neither_resends_nor_overwrites(repo: Path) -> None:
    first = batchrun(repo, *WAIT)
    assert first.returncode == 0, first.stderr
    out = repo / "manifests" / "out" / "triage.jsonl"
    answers = out.read_bytes()
    sent = (repo / ".batchrun" / "sent.jsonl").read_bytes()
    for cwd in (repo.parent, repo.parent / "sibling", Path("/")):
        target = os.path.relpath(repo / "manifests", cwd)
        result = batchrun(cwd, *WAIT, target)
        assert result.returncode == 0, result.stderr
        assert "Done: 5 rows answered." in result.stdout
        assert not (cwd / ".batchrun").exists() or cwd == repo
        assert out.read_bytes() == answers  # byte-identical
        assert (repo / ".batchrun" / "sent.jsonl").read_bytes() == sent  # nothing sent again


def test_no_batchrun_yaml_above_refuses_to_plan_or_apply(repo: Path) -> None:
    sibling = repo.parent / "sibling"
    for args in (("plan",), ("apply", "--auto-approve"), ("status",), ("results", "triage")):
        result = batchrun(sibling, *args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert f"Error: no batchrun.yaml found in {sibling.resolve()} or any parent" in \
            result.stderr
        assert "run `batchrun init`, or pass --config" in result.stderr
    (sibling / "m.yaml").write_text(TRIAGE)  # a manifest there changes nothing: no project
    (sibling / "tickets.csv").write_text(TICKETS)
    result = batchrun(sibling, "apply", "--auto-approve")
    assert result.returncode == 1 and "no batchrun.yaml found" in result.stderr
    assert not (sibling / ".batchrun").exists()


def test_validate_and_render_work_without_a_project_and_say_so(tmp_path: Path) -> None:
    (tmp_path / "tickets.csv").write_text(TICKETS)
    (tmp_path / "triage.yaml").write_text(TRIAGE)
    result = batchrun(tmp_path, "validate")
    assert result.returncode == 0 and "1 manifest valid: triage" in result.stdout
    assert f"no batchrun.yaml found in {tmp_path.resolve()} or any parent" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1  # says so in one line
    rendered = batchrun(tmp_path, "render", "triage.yaml", "--limit", "1")
    assert rendered.returncode == 0 and json.loads(rendered.stdout)["custom_id"] == "T1"


def test_paths_of_two_projects_are_refused(repo: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "batchrun.yaml").write_text(SETTINGS)
    (other / "tickets.csv").write_text(TICKETS)
    (other / "b.yaml").write_text(TRIAGE.replace("name: triage", "name: b"))
    result = batchrun(tmp_path, "plan", str(repo / "manifests"), str(other / "b.yaml"))
    assert result.returncode == 1
    assert "the paths given belong to different projects" in result.stderr
    assert str(repo) in result.stderr and str(other) in result.stderr


def test_a_saved_plan_applies_from_any_folder(repo: Path) -> None:
    made = batchrun(repo, "plan", "--out", "plan.json")
    assert made.returncode == 0, made.stderr
    applied = batchrun(repo.parent / "sibling", "apply", str(repo / "plan.json"))
    assert applied.returncode == 0, applied.stderr
    assert "Applied the saved plan: 5 rows sent in 1 job," in applied.stdout
    assert (repo / ".batchrun" / "jobs").is_dir()
    assert not (repo.parent / "sibling" / ".batchrun").exists()


def test_spec_hashes_do_not_depend_on_where_the_command_runs(repo: Path) -> None:
    hashes = set()
    for cwd in (repo, repo / "manifests", repo.parent / "sibling"):
        project = api.load_project([os.path.relpath(repo / "manifests", cwd)], cwd=cwd)
        assert project.settings.root == repo.resolve()
        hashes.add(project.manifests[0].spec_hash)
        result = batchrun(cwd, "plan", "--json", os.path.relpath(repo / "manifests", cwd))
        hashes.add(json.loads(result.stdout)["manifests"][0]["spec_hash"])
    assert len(hashes) == 1


def test_the_python_api_follows_the_same_rule(repo: Path) -> None:
    elsewhere = repo.parent / "sibling"
    project = api.load_project([repo / "manifests"], cwd=elsewhere)
    assert project.settings.state_dir == repo.resolve() / ".batchrun"
    (elsewhere / "tickets.csv").write_text(TICKETS)
    (elsewhere / "m.yaml").write_text(TRIAGE)
    lonely = api.load_project(cwd=elsewhere)  # loads, to be validated, but holds no state
    with pytest.raises(api.BatchrunError, match=r"no batchrun\.yaml found"):
        api.plan(lonely)
    assert not (elsewhere / ".batchrun").exists()


def test_init_then_validate_plan_and_apply_in_a_new_folder(tmp_path: Path) -> None:
    made = batchrun(tmp_path, "init", "proj")
    assert made.returncode == 0, made.stderr
    assert made.stdout.splitlines()[-4:] == [
        "  cd proj",
        "  batchrun validate                       # every manifest error at once",
        "  batchrun plan                           # what apply would send, and what it would cost",
        "  batchrun apply --auto-approve --wait    # answer every row (echo, offline)"]
    proj = tmp_path / "proj"
    for yaml_file in (proj / "batchrun.yaml", proj / "manifests" / "review-sentiment.yaml"):
        first = yaml_file.read_text().splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema=")
        schema = (yaml_file.parent / first.split("=", 1)[1]).resolve()
        assert json.loads(schema.read_text())["$schema"].startswith("https://json-schema.org")
    assert (proj / ".github" / "workflows" / "batchrun.yml").read_text() == (
        Path(__file__).resolve().parent.parent / "docs" / "ci" / "github-actions.yml").read_text()
    assert ".batchrun/" in (proj / ".gitignore").read_text().splitlines()
    assert batchrun(proj, "validate").returncode == 0
    assert batchrun(proj, "plan").returncode == 0
    done = batchrun(proj, *WAIT)
    assert done.returncode == 0 and "Done: 3 rows answered." in done.stdout, done.stderr
    again = batchrun(tmp_path, "init", "proj")
    assert again.returncode == 1 and "init never overwrites a file" in again.stderr
    assert (proj / "out" / "review-sentiment.jsonl").is_file()  # nothing was touched


def test_schema_prints_the_shipped_schemas(tmp_path: Path) -> None:
    for name in ("manifest", "project", "plan"):
        out = batchrun(tmp_path, "schema", name)
        assert out.returncode == 0 and json.loads(out.stdout)["$id"].endswith(f"{name}.v1.json")


# --- errors that explain ----------------------------------------------------------------------

def test_no_google_credentials_is_one_line_with_the_fix(tmp_path: Path, golden) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "batchrun.yaml").write_text(
        "backend: vertex\nproject: my-proj-123\nregion: us-east5\nstaging: gs://b/x\n")
    (tmp_path / "tickets.csv").write_text(TICKETS)
    (tmp_path / "triage.yaml").write_text(TRIAGE)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BATCHRUN_", "GOOGLE_", "CLOUDSDK_")) and k != "STORAGE_EMULATOR_HOST"}
    result = subprocess.run([sys.executable, "-m", "runner", "plan"], cwd=tmp_path, text=True,
                            capture_output=True, timeout=120, check=False,
                            env={**env, "HOME": str(tmp_path), "GCE_METADATA_HOST": "127.0.0.1:9"})
    assert result.returncode == 1
    golden("errors/no-credentials.txt", result.stderr)


@pytest.mark.parametrize(("params", "model"), [
    ("{max_token: 256}", "anthropic/claude-haiku-4-5@20251001"),
    ("{max_token: 256}", "meta/llama-4-maverick-17b-128e-instruct-maas"),
    ("{max_tokens: 64}", "anthropic/claude-3.5-haiku@20241022"),
])
def test_parameter_and_model_typos_are_named_with_the_fix(repo: Path, params: str, model: str,
                                                          golden) -> None:  # type: ignore[no-untyped-def]
    manifest = repo / "manifests" / "triage.yaml"
    manifest.write_text(manifest.read_text().replace("{max_tokens: 64}", params)
                        .replace("anthropic/claude-haiku-4-5@20251001", model))
    result = batchrun(repo, "validate")
    name = f"errors/typo-{params.split(':', maxsplit=1)[0].strip('{')}-{model.split('/', maxsplit=1)[0]}.txt"
    golden(name, result.stderr)
    assert result.returncode == (0 if params == "{max_tokens: 64}" else 1)


def test_echo_answers_a_json_manifest_with_a_valid_instance(repo: Path) -> None:
    manifest = repo / "manifests" / "triage.yaml"
    manifest.write_text(manifest.read_text().replace("  max_attempts: 2", """\
  max_attempts: 2
  response:
    format: json
    schema:
      type: object
      required: [label, confidence]
      properties:
        label: {enum: [billing, bug, question]}
        confidence: {type: number, minimum: 0, maximum: 1}"""))
    done = batchrun(repo, *WAIT)
    assert done.returncode == 0 and "Done: 5 rows answered." in done.stdout, done.stdout
    rows = [json.loads(x) for x in batchrun(repo, "results", "triage", "--format", "jsonl")
            .stdout.splitlines()]
    assert {json.dumps(r["output"]) for r in rows} == {'{"label": "billing", "confidence": 0.0}'}


def test_the_readme_api_example_runs_as_written(tmp_path: Path) -> None:
    """The README's Python API snippet, executed as written against a copy of the examples."""
    import shutil

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    code = readme.split("<!-- api-example -->\n```python\n", 1)[1].split("```", 1)[0]
    configs = Path(__file__).resolve().parent.parent / "configs"
    shutil.copytree(configs, tmp_path / "configs",
                    ignore=shutil.ignore_patterns("vertex", "out", ".batchrun"))
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    answered = namespace["answer_every_row"](str(tmp_path / "configs"))  # type: ignore[operator]
    assert answered == {"order-notes": 3, "prebuilt-requests": 2, "product-embeddings": 3,
                        "product-faq": 3, "review-summary": 4, "ticket-triage": 6}


# --- issue 13 (first part): apply sends the rows the plan showed, or none --------------------------

def test_rows_appended_after_the_plan_are_not_sent(repo: Path) -> None:
    from tests.fakes import FakeBackend

    fake = FakeBackend()
    project = api.load_project([repo / "manifests"])
    shown = api.plan(project, backend=fake)
    assert shown.manifest("triage").rows.to_do == 5
    csv = repo / "manifests" / "tickets.csv"
    csv.write_text(csv.read_text() + "T6,Late,Added after the plan\n")
    with pytest.raises(api.BatchrunError, match=r"the rows to send changed since the plan "
                                                r"\(6 rows now, 5 in the plan\); nothing was sent"):
        api.apply(api.load_project([repo / "manifests"]), shown, backend=fake)
    assert fake.created() == []
    again = api.plan(api.load_project([repo / "manifests"]), backend=fake)
    report = api.apply(api.load_project([repo / "manifests"]), again, backend=fake)
    assert report.rows_sent == 6  # the new plan, which the budget check saw, is what is sent


class _Watched:
    """A running `batchrun apply`, its stdout read as it comes, so a test can act at a moment."""

    def __init__(self, repo: Path, *args: str, stdin: int | None = None) -> None:
        import threading

        env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHRUN_")}
        self.proc = subprocess.Popen([sys.executable, "-m", "runner", "apply", *args], cwd=repo,
                                     text=True, stdin=stdin, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE,
                                     env={**env, "BATCHRUN_PAUSE_AT": "stage:3"})
        self.out: list[str] = []
        assert self.proc.stdout is not None
        stdout = self.proc.stdout
        self.reader = threading.Thread(target=lambda: self.out.extend(iter(stdout.readline, "")),
                                       daemon=True)
        self.reader.start()

    def wait_for(self, text: str, timeout: float = 60) -> None:
        import time

        deadline = time.monotonic() + timeout
        while text not in "".join(self.out):
            assert time.monotonic() < deadline and self.proc.poll() is None, self.out
            time.sleep(0.05)

    def finish(self) -> tuple[int, str, str]:
        assert self.proc.stderr is not None
        err = self.proc.stderr.read()
        code = self.proc.wait(timeout=60)
        self.reader.join(timeout=10)
        return code, "".join(self.out), err


def _append(repo: Path) -> None:
    csv = repo / "manifests" / "tickets.csv"
    csv.write_text(csv.read_text() + "T6,Late,Added after the plan\n")


def _plan_json(repo: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHRUN_")}
    out = subprocess.run([sys.executable, "-m", "runner", "plan", "--json"], cwd=repo, env=env,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)  # type: ignore[no-any-return]


def test_auto_approved_apply_sends_only_the_rows_its_plan_showed(repo: Path) -> None:
    apply = _Watched(repo, "--auto-approve")
    apply.wait_for("create: 5 rows in 1 job")  # planned; it pauses before staging
    _append(repo)
    code, out, err = apply.finish()
    assert code == 0, out + err
    assert "Applied: 5 rows sent in 1 job" in out
    assert "the source changed since the plan; only the rows the plan showed were sent" in err
    rows = _plan_json(repo)["manifests"][0]["rows"]
    assert rows["to_do"] == 1 and rows["in_flight"] + rows["done"] == 5  # T6 waits for a plan


def test_an_interactive_apply_asks_again_when_another_apply_sent_its_rows(repo: Path) -> None:
    import pty
    import time

    master, slave = pty.openpty()
    apply = _Watched(repo, stdin=slave)
    os.close(slave)
    apply.wait_for("create: 5 rows in 1 job")  # the plan is shown; nobody has said yes yet
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHRUN_")}
    other = subprocess.run([sys.executable, "-m", "runner", "apply", "--auto-approve"], cwd=repo,
                           env=env, capture_output=True, text=True, check=False)
    assert "Applied: 5 rows sent in 1 job" in other.stdout, other.stdout + other.stderr
    os.write(master, b"yes\n")  # approve the plan of 5 rows, which the other apply just sent
    time.sleep(1)
    os.write(master, b"no\n")  # if asked again (to collect the other's job), decline
    code, out, err = apply.finish()
    os.close(master)
    assert code in (0, 1)  # 1 when it asked again (to collect) and was told no
    assert "1 job was created for it since the plan (another apply?)" in err, out + err
    assert "nothing was sent" in err
    assert "Applied: 5 rows" not in out  # the 5 rows were paid once, by the other apply
    assert len(list((repo / ".batchrun" / "jobs").glob("*/job.json"))) == 1


def test_a_working_folder_that_is_gone_is_said_plainly(tmp_path: Path) -> None:
    """Red team: from a deleted folder, `plan` ended in "unexpected FileNotFoundError"."""
    gone = tmp_path / "gone"
    gone.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHRUN_")}
    code = ("import os, sys; os.chdir(sys.argv[1]); os.rmdir(sys.argv[1]); "
            "sys.argv = ['batchrun', 'plan']; from runner.cli.commands import main; main()")
    done = subprocess.run([sys.executable, "-c", code, str(gone)], env=env, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 1
    assert "Error: the current folder no longer exists" in done.stderr
    assert "unexpected" not in done.stderr

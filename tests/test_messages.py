"""Issue 24: every message names its real cause — the missing `gcp` extra (with the install line of
the distribution pyproject.toml names), missing credentials, a disabled API, a back-off (what is
held, and until when) — each a golden in tests/golden/messages/."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runner import api
from runner.backends.base import JobState
from runner.views import plan as planview
from runner.views import text as display
from tests import crashkit
from tests.conftest import TICKETS, TRIAGE, ProjectDir
from tests.fakes import FakeBackend
from tests.vertex_env import VertexWorld

REPO = Path(__file__).resolve().parent.parent
Golden = Callable[[str, str], None]

# Runs the CLI as if the `gcp` extra were not installed: nothing named google.* can be imported.
WITHOUT_GCP = textwrap.dedent("""\
    import sys

    class NoGoogle:
        def find_spec(self, name, path=None, target=None):
            if name == "google" or name.startswith("google."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoGoogle())
    for loaded in [m for m in sys.modules if m == "google" or m.startswith("google.")]:
        del sys.modules[loaded]
    from runner.cli.commands import main
    main(sys.argv[1:], prog_name="batchrun")
    """)

VERTEX_SETTINGS = "backend: vertex\nproject: my-proj-123\nregion: us-east5\nstaging: gs://b/x\n"


def vertex_project(root: Path) -> None:
    (root / "batchrun.yaml").write_text(VERTEX_SETTINGS)
    (root / "tickets.csv").write_text(TICKETS)
    (root / "triage.yaml").write_text(TRIAGE)


def clean_env(home: Path) -> dict[str, str]:
    """No emulators, no Google credentials, no gcloud login, no metadata server."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BATCHRUN_", "GOOGLE_", "CLOUDSDK_"))
           and k != "STORAGE_EMULATOR_HOST"}
    return {**env, "HOME": str(home), "CLOUDSDK_CONFIG": str(home / "gcloud"),
            "GCE_METADATA_HOST": "127.0.0.1:9", "GCE_METADATA_IP": "127.0.0.1:9",
            "NO_GCE_CHECK": "True", "PYTHONPATH": str(REPO)}


def test_without_the_gcp_extra_plan_and_doctor_say_what_to_install(tmp_path: Path,
                                                                   golden: Golden) -> None:
    vertex_project(tmp_path)
    name = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["name"]
    assert "gcp" in tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    for command in ("plan", "doctor", "status"):
        result = subprocess.run([sys.executable, "-c", WITHOUT_GCP, command], cwd=tmp_path,
                                text=True, capture_output=True, timeout=120, check=False,
                                env=clean_env(tmp_path))
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"pip install '{name}[gcp]'" in result.stderr
        assert "ModuleNotFoundError" not in result.stderr and "enable" not in result.stderr
        golden(f"messages/no-gcp-extra-{command}.txt", result.stderr)


def test_doctor_without_credentials_sends_nobody_to_enable_an_api(tmp_path: Path,
                                                                   golden: Golden) -> None:
    vertex_project(tmp_path)
    result = subprocess.run([sys.executable, "-m", "runner", "doctor"], cwd=tmp_path, text=True,
                            capture_output=True, timeout=120, check=False,
                            env=clean_env(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "enable" not in result.stdout, result.stdout
    assert "✗ Vertex AI in us-east5: not checked without credentials" in result.stdout
    assert "gcloud auth application-default login" in result.stdout
    shown = re.sub(r"`id: [a-z0-9-]+-[0-9a-f]{6}`", "`id: FOLDER-RANDOM`", result.stdout)
    golden("messages/doctor-no-credentials.txt", shown)


def test_a_disabled_api_is_named_with_the_command_that_enables_it(
        vertex: VertexWorld, golden: Golden,
        run) -> None:  # type: ignore[no-untyped-def]
    vertex.p.write("rows.jsonl", '{"id": "a1", "text": "hi"}\n')
    vertex.p.write("m.yaml", crashkit.MANIFEST)
    vertex.faults(service_disabled=True)
    try:
        out = run("plan", code=1)
        assert "Vertex AI API (aiplatform.googleapis.com) is not enabled in project " \
            "batchrun-test" in out
        assert "gcloud services enable aiplatform.googleapis.com --project batchrun-test" in out
        doctor = run("doctor", code=1)
        (line,) = [x for x in doctor.splitlines() if x.startswith("✗ Vertex AI in")]
        assert "Vertex AI API (aiplatform.googleapis.com) is not enabled" in line
        assert "fix: gcloud services enable aiplatform.googleapis.com" in doctor
        masked = doctor.replace(vertex.suffix, "XXXXXX").replace(vertex.vertex, "http://EMULATOR")
        masked = masked.replace(vertex.project().settings.project_label, "staging-DIGEST")
        masked = re.sub(r"`id: [a-z0-9-]+-[0-9a-f]{6}`", "`id: FOLDER-RANDOM`", masked)
        golden("messages/service-disabled-plan.txt", out)
        golden("messages/service-disabled-doctor.txt", masked)
    finally:
        vertex.faults(service_disabled=False)


def load(p: ProjectDir) -> api.Project:
    return api.load_project(cwd=p.root)


@pytest.mark.parametrize(("kind", "code", "error"), [
    ("internal", 13, "INTERNAL"), ("failure", 14, "503 Service Unavailable")])
def test_a_back_off_says_what_it_holds_and_until_when(project_dir: ProjectDir, golden: Golden,
                                                      kind: str, code: int, error: str) -> None:
    """During the hold after a job-level failure, `apply --wait` said "wait: 5 rows for a free job
    slot", then "gave up waiting after 40s; jobs keep running" while no job ran."""
    fake = FakeBackend()  # its clock stands in 2026-01-01: a ten-year hold is a fixed date
    ten_years = 315360000
    project_dir.write("batchrun.yaml", f"quota: {{internal_retry_delay: {ten_years}, "
                                       f"failure_backoff: {ten_years}, "
                                       f"failure_backoff_max: {ten_years}}}\n")
    api.apply(load(project_dir), backend=fake)
    (job,) = fake.jobs
    fake.end(job, JobState.FAILED, code=code, message=error)
    api.apply(load(project_dir), backend=fake)  # collects the failed job; sends nothing
    shown = planview.plan_text(api.plan(load(project_dir), backend=fake))
    assert "free job slot" not in shown and "hold" in shown
    said: list[object] = []
    with pytest.raises(api.BatchrunError) as gave_up:
        api.converge(load(project_dir), backend=fake, poll_interval=0.01, timeout=0.05,
                     say=said.append)
    events = [display.event_text(e) for e in said]  # type: ignore[arg-type]
    assert len(events) == 1 and "until 2035-12-30" in events[0]  # said once, not at every poll
    ended = display.diagnostics_text(gave_up.value.diagnostics)
    assert "keep running" not in ended and "no job is running" in ended
    assert len(fake.created()) == 1
    golden(f"messages/hold-{kind}.txt", "$ batchrun plan\n" + shown
           + "$ batchrun apply --auto-approve --wait --timeout 0.05\n" + "\n".join(events)
           + "\n" + ended)


@pytest.mark.parametrize("source", ["{bigquery: {table: p.d.t}, id: ticket_id}",
                                    '{gcs: {uris: ["gs://b/t.jsonl"]}, id: ticket_id}'])
def test_a_cloud_source_on_the_local_backend_is_named_at_its_line_by_plan_and_apply_alike(
        project_dir: ProjectDir, run: Any, source: str) -> None:
    """Found by review of the stores: apply read the source's version before the row pass, and the
    local backend's refusal came without the manifest's file, line and field."""
    project_dir.write("triage.yaml", TRIAGE.replace("{file: tickets.csv, id: ticket_id}", source))
    kind = "bigquery" if "bigquery" in source else "gcs"
    for command in (("plan",), ("apply", "--auto-approve")):
        out = run(*command, code=1)
        assert "the local backend reads local files only" in out, (command, out)
        assert "in triage.yaml, line" in out and f"at spec.source.{kind}" in out, (command, out)

"""Shared fixtures: isolated environment, a project folder factory, and golden-file comparison."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).parent / "golden"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite tests/golden files")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from runner import redact

    for key in list(os.environ):
        if key.startswith(("BATCHRUN_", "CLOUDSDK_")) or key in (
                "STORAGE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT"):
            monkeypatch.delenv(key)
    # The local executor's record of each row it sent (.batchrun/sent.jsonl), which many tests
    # count with; batchrun writes it only when asked. Subprocesses inherit it.
    monkeypatch.setenv("BATCHRUN_RECORD_SENT", "1")
    # gcloud's configured project is read from its files: never this machine's own.
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud"))
    # Secrets a test's settings made this process remember are that test's alone.
    monkeypatch.setattr(redact, "_remembered", set())


@pytest.fixture(scope="session")
def emulator_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Fake Vertex, gcp-storage-emulator and local-bigquery on free loopback ports, for the session."""
    from runner.devtools.emulators import Emulators

    emulators = Emulators(tmp_path_factory.mktemp("emulators"))
    try:
        yield emulators.start()
    finally:
        emulators.stop()


@pytest.fixture
def vertex(emulator_env: dict[str, str], project_dir: ProjectDir,
           monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from tests.vertex_env import VertexWorld

    for key, value in emulator_env.items():
        monkeypatch.setenv(key, value)
    return VertexWorld(emulator_env, project_dir)
    return None


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Callable[[str, str], None]:
    update = request.config.getoption("--update-golden")

    def check(name: str, actual: str) -> None:
        path = GOLDEN / name
        if update or not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(actual, encoding="utf-8")
            if not update:
                pytest.fail(f"golden file {name} was missing and has been written; re-run")
        assert actual == path.read_text(encoding="utf-8"), f"differs from golden/{name}"

    return check


SETTINGS = """\
backend: local
quota: {max_concurrent_jobs: 4, max_rows_per_job: 1000}
"""

TICKETS = """\
ticket_id,subject,body
T1,Charged twice,My card was charged twice.
T2,App crashes,The app closes on login.
T3,Export?,Can I export to CSV?
T4,Refund,Where is my refund?
T5,Dark mode,Please add dark mode.
"""

TRIAGE = """\
apiVersion: batchrun/v1
kind: BatchJob
metadata:
  name: triage
spec:
  model: anthropic/claude-haiku-4-5@20251001
  parameters: {max_tokens: 64}
  source: {file: tickets.csv, id: ticket_id}
  prompt:
    system: Classify the ticket.
    user: "{{ subject }}: {{ body }}"
  passthrough: [subject]
  max_attempts: 2
  destination: {file: out/triage.jsonl}
"""


class ProjectDir:
    """A throwaway project: batchrun.yaml, manifests and data files under tmp_path."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, name: str, text: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path


@pytest.fixture
def project_dir(tmp_path: Path) -> ProjectDir:
    p = ProjectDir(tmp_path)
    p.write("batchrun.yaml", SETTINGS)
    p.write("tickets.csv", TICKETS)
    p.write("triage.yaml", TRIAGE)
    return p


@pytest.fixture
def run(project_dir: ProjectDir, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Invoke the CLI in the project folder; assert the exit code; return stdout + stderr."""
    from click.testing import CliRunner

    from runner.cli import commands as cli

    monkeypatch.chdir(project_dir.root)

    def invoke(*args: str, code: int = 0) -> str:
        result = CliRunner().invoke(cli.main, list(args))
        assert result.exit_code == code, result.output + result.stderr
        return result.stdout + result.stderr

    return invoke

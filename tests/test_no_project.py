"""Issue 24: no project, no scan. From a folder with no batchrun.yaml above it, every command that
needs a project refuses at once with the one message, and reads nothing below the folder (counted
with an audit hook in the command's own process: a scan opens or lists what is below)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Runs the CLI in-process under an audit hook that notes every file opened and folder listed below
# the working folder; prints what it saw as JSON on the last line of stderr.
PROBE = textwrap.dedent("""\
    import json, os, sys, time
    below = os.path.realpath(os.getcwd()) + os.sep
    touched = []

    def hook(event, args):
        if event in ("open", "os.scandir", "os.listdir") and args and args[0] is not None:
            path = args[0]
            if isinstance(path, int):
                return
            path = os.fsdecode(path)
            real = os.path.realpath(path if os.path.isabs(path) else os.path.join(below, path))
            if real.startswith(below):
                touched.append(real)

    sys.addaudithook(hook)
    from runner.cli.commands import main
    started = time.monotonic()
    try:
        main(sys.argv[1:], prog_name="batchrun")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    elapsed = time.monotonic() - started
    print(json.dumps({"code": code, "touched": touched[:5], "count": len(touched),
                      "seconds": elapsed}), file=sys.stderr)
    """)

NEEDS_A_PROJECT = [
    ("plan",), ("plan", "--json"), ("apply", "--auto-approve"),
    ("apply", "--auto-approve", "--wait", "--timeout", "5"), ("status",), ("results", "many"),
    ("cancel", "many"), ("retry", "many"), ("gc", "--dry-run"), ("doctor",), ("unlock", "many"),
    ("preview", "many"), ("report", "many"), ("import", "many", "job-1"),
]


@pytest.fixture(scope="module")
def strangers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder like /tmp: no batchrun.yaml, 500 broken YAML files of other projects below."""
    root = tmp_path_factory.mktemp("tmp-like")
    for i in range(50):
        folder = root / f"other-{i}" / "manifests"
        folder.mkdir(parents=True)
        for j in range(10):
            (folder / f"m{j}.yaml").write_text(
                f"apiVersion: batchrun/v1\nkind: BatchJob\nmetadata: {{name: m{i}-{j}\n  spec: [")
    return root


def probe(cwd: Path, *args: str) -> tuple[dict[str, object], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHRUN_")}
    result = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=cwd, text=True,
                            capture_output=True, timeout=120, check=False,
                            env={**env, "PYTHONPATH": str(REPO)})
    *said, last = result.stderr.strip().splitlines()
    return json.loads(last), "\n".join(said) + result.stdout


@pytest.mark.parametrize("args", NEEDS_A_PROJECT, ids=" ".join)
def test_a_command_that_needs_a_project_refuses_without_reading_below(
        strangers: Path, args: tuple[str, ...]) -> None:
    seen, said = probe(strangers, *args)
    assert seen["code"] == 1, said
    assert said.splitlines() == [
        f"Error: no batchrun.yaml found in {strangers.resolve()} or any parent",
        "  Hint: run `batchrun init`, or pass --config PATH/batchrun.yaml"], said
    assert seen["count"] == 0, seen["touched"]  # nothing below was opened or listed
    # The bound, loosely (an 18 s scan before): refusing reads nothing, so it is quick.
    assert float(seen["seconds"]) < 5, seen  # type: ignore[arg-type]


def test_validate_without_a_project_looks_at_the_folder_not_below(strangers: Path) -> None:
    seen, said = probe(strangers, "validate")
    assert seen["code"] == 1
    assert f"no batchrun.yaml found in {strangers.resolve()} or any parent, and no manifests " \
        "here" in said
    assert "other-" not in said and seen["count"] == 0, seen["touched"]

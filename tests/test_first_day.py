"""Issue 24: the project `batchrun init` writes goes to CI as it is. The workflow names only
environments batchrun.yaml defines; the environment CI applies writes where answers outlive a
checkout, the local one to its own file; and the workflow's own `run:` steps, read from the file
init wrote, run on fresh clones against the emulators."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from runner import api
from runner.errors import ManifestError
from runner.spec import DestinationKind
from tests.conftest import REPO, ProjectDir

WORKFLOW = Path(".github") / "workflows" / "batchrun.yml"


# --- a destination per environment ---------------------------------------------------------------

def _two_places(p: ProjectDir, env: str = "vertex") -> None:
    p.write("batchrun.yaml", """\
        backend: local
        environments:
          vertex: {backend: vertex, project: my-gcp-project, region: us-east5,
                   staging: gs://my-bucket/batchrun}
        """)
    p.write("triage.yaml", (p.root / "triage.yaml").read_text().replace(
        "destination: {file: out/triage.jsonl}", f"""destination:
    file: out/triage.jsonl
    environments:
      {env}: {{gcs: {{prefix: "gs://my-bucket/results/triage/"}}}}"""))


def test_a_destination_names_where_each_environment_writes(project_dir: ProjectDir) -> None:
    _two_places(project_dir)
    local = api.load_project(cwd=project_dir.root, environ={}).manifests[0]
    remote = api.load_project(cwd=project_dir.root, environment="vertex", environ={}).manifests[0]
    assert local.destination.kind is DestinationKind.FILE
    assert local.destination.location == str(project_dir.root / "out" / "triage.jsonl")
    assert remote.destination.kind is DestinationKind.GCS
    assert remote.destination.location == "gs://my-bucket/results/triage/"
    assert local.spec_hash != remote.spec_hash  # two ledgers, never one


def test_a_destination_for_an_environment_batchrun_yaml_lacks_is_named(
        project_dir: ProjectDir) -> None:
    _two_places(project_dir, env="prod")
    with pytest.raises(ManifestError) as info:
        api.load_project(cwd=project_dir.root, environ={})
    [problem] = info.value.diagnostics
    assert problem.summary == ('destination for environment "prod", which batchrun.yaml does '
                               'not define')
    assert (problem.file, problem.line, problem.path) == (
        "triage.yaml", 17, "spec.destination.environments.prod")
    assert problem.hint == "environments in batchrun.yaml: vertex"


# --- what init writes ----------------------------------------------------------------------------

def batchrun(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("BATCHRUN_") and k != "STORAGE_EMULATOR_HOST"}
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=120, check=False,
                          env={**clean, "PYTHONPATH": str(REPO), **(env or {})})


def run_steps(workflow: dict[str, Any], job: str) -> list[str]:
    return [step["run"] for step in workflow["jobs"][job]["steps"] if "run" in step]


def environments_named(workflow: dict[str, Any]) -> set[str]:
    named = set()
    for job in workflow["jobs"]:
        for step in run_steps(workflow, job):
            named |= set(re.findall(r"--env[ =](\S+)", step))
        named |= {v for k, v in {**workflow.get("env", {}),
                                 **workflow["jobs"][job].get("env", {})}.items()
                  if k == "BATCHRUN_ENV"}
    return named


def test_init_writes_a_workflow_naming_its_own_environments(tmp_path: Path) -> None:
    assert batchrun(tmp_path, "init", "proj").returncode == 0
    proj = tmp_path / "proj"
    workflow = yaml.safe_load((proj / WORKFLOW).read_text())
    defined = set(yaml.safe_load((proj / "batchrun.yaml").read_text())["environments"])
    named = environments_named(workflow)
    assert named and named <= defined, f"the workflow names {named}, batchrun.yaml defines {defined}"
    for env in named:  # where CI applies, answers outlive the checkout
        for m in api.load_project(cwd=proj, environment=env, environ={}).manifests:
            assert m.destination.kind in (DestinationKind.GCS, DestinationKind.BIGQUERY), m.name
    for m in api.load_project(cwd=proj, environ={}).manifests:  # local echo: a file of its own
        assert m.destination.kind is DestinationKind.FILE, m.name
    pip = [s for job in workflow["jobs"] for s in run_steps(workflow, job) if "pip install" in s]
    assert pip and all("vars.BATCHRUN_PIP" in s for s in pip)
    assert "batchrun-vertex[gcp]" in (proj / WORKFLOW).read_text()


# --- the workflow's own commands, on fresh clones, against the emulators -------------------------

def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=first-day", "-c", "user.email=first@day.test",
                    "-c", "init.defaultBranch=main", *args], cwd=cwd, check=True,
                   capture_output=True, timeout=60)


def clone(origin: Path, into: Path) -> Path:
    git(origin.parent, "clone", "-q", str(origin), str(into))
    return into


class Runner:
    """Runs a workflow's `run:` steps as GitHub Actions does (bash -eo pipefail), with `batchrun` on
    PATH from this checkout, `${{ vars.X }}` substituted and the emulators as Google."""

    def __init__(self, tmp: Path, emulator_env: dict[str, str]) -> None:
        self.bin = tmp / "bin"
        self.bin.mkdir()
        shim = self.bin / "batchrun"
        shim.write_text(f"#!/bin/sh\nPYTHONPATH={shlex.quote(str(REPO))} exec "
                        f"{shlex.quote(sys.executable)} -m runner \"$@\"\n")
        shim.chmod(0o755)
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("BATCHRUN_", "GITHUB_")) and k != "STORAGE_EMULATOR_HOST"}
        self.env.update(emulator_env, PATH=f"{self.bin}:{os.environ['PATH']}")
        self.vars = {"BATCHRUN_PIP": f"batchrun-vertex[gcp] @ file://{REPO}"}

    def steps(self, workflow: dict[str, Any], job: str, cwd: Path) -> dict[str, str]:
        """Every run step of `job` in `cwd` (installing is skipped: batchrun is this checkout);
        the step outputs written to $GITHUB_OUTPUT."""
        outputs = cwd / ".github-output"
        outputs.write_text("")
        for step in run_steps(workflow, job):
            script = re.sub(r"\$\{\{\s*vars\.(\w+)\s*\}\}", lambda m: self.vars[m.group(1)], step)
            assert "${{" not in script, script
            if script.startswith("pip install"):
                continue
            done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
                                  cwd=cwd, env={**self.env, "GITHUB_OUTPUT": str(outputs)},
                                  text=True, capture_output=True, timeout=180, check=False)
            assert done.returncode == 0, f"`{script.strip()}` failed:\n{done.stdout}{done.stderr}"
        return dict(line.split("=", 1) for line in outputs.read_text().splitlines() if "=" in line)

    def batchrun(self, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["batchrun", *args], cwd=cwd, env=self.env, text=True,
                              capture_output=True, timeout=120, check=False)


def buckets_named(proj: Path, env: str) -> set[str]:
    project = api.load_project(cwd=proj, environment=env, environ={})
    places = [project.settings.staging or "", *(m.destination.location for m in project.manifests)]
    return {p[5:].split("/")[0] for p in places if p.startswith("gs://")}


def test_the_workflow_init_writes_runs_on_fresh_clones_against_the_emulators(
        tmp_path: Path, emulator_env: dict[str, str]) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    assert batchrun(tmp_path, "init", "origin").returncode == 0
    origin = tmp_path / "origin"
    git(origin, "init", "-q")
    git(origin, "add", "-A")
    git(origin, "commit", "-q", "-m", "batchrun init")
    workflow = yaml.safe_load((origin / WORKFLOW).read_text())
    [env] = environments_named(workflow)
    vertex = emulator_env["BATCHRUN_VERTEX_ENDPOINT"]
    requests.post(f"{vertex}/_fake/reset", timeout=10).raise_for_status()
    gcs = storage.Client(project="p", credentials=AnonymousCredentials(),
                         client_options={"api_endpoint": emulator_env["STORAGE_EMULATOR_HOST"]})
    for bucket in buckets_named(origin, env):  # what a user makes once (the README says how)
        if gcs.lookup_bucket(bucket) is None:
            gcs.create_bucket(bucket)
        for blob in gcs.list_blobs(bucket):
            blob.delete()
    ci = Runner(tmp_path, emulator_env)

    # A pull request: validate, plan as markdown, save the plan.
    pr = clone(origin, tmp_path / "pr")
    outputs = ci.steps(workflow, "plan", pr)
    assert outputs == {"exitcode": "3"}  # changes present; the check passes
    assert "review-sentiment" in (pr / "plan.md").read_text()
    assert (pr / "plan.md").read_text().lstrip().startswith("#")
    # The reviewed plan, carried out from another folder.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    saved = ci.batchrun(elsewhere, "--env", env, "apply", str(pr / "plan.json"))
    assert saved.returncode == 0, saved.stdout + saved.stderr

    # main: the apply job on a fresh checkout, run again by the schedule until it has collected.
    for attempt in range(40):
        main = clone(origin, tmp_path / f"main-{attempt}")
        ci.steps(workflow, "apply", main)
        status = json.loads(ci.batchrun(main, "--env", env, "plan", "--json").stdout)
        rows = status["manifests"][0]["rows"]
        if rows["done"] == rows["total"]:
            break
        time.sleep(0.5)
    assert (rows["total"], rows["done"], rows["to_do"]) == (3, 3, 0)

    # Another fresh clone, with the collected jobs gone (retention 0, then gc): nothing to do.
    fresh = clone(origin, tmp_path / "fresh")
    settings = fresh / "batchrun.yaml"
    settings.write_text(settings.read_text() + "retention: 0\n")
    gc = ci.batchrun(fresh, "--env", env, "gc")
    assert gc.returncode == 0, gc.stdout + gc.stderr
    plan = ci.batchrun(fresh, "--env", env, "plan", "--json", "--detailed-exitcode")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    rows = json.loads(plan.stdout)["manifests"][0]["rows"]
    assert (rows["total"], rows["done"], rows["to_do"]) == (3, 3, 0)
    sent = requests.get(f"{vertex}/_fake/sent", timeout=10).json()
    assert sorted(s["custom_id"] for s in sent) == ["r1", "r2", "r3"]  # each row paid once

    # Local echo answers land in their own file, never in CI's destination.
    local = ci.batchrun(fresh, "apply", "--auto-approve", "--wait", "--poll-interval", "0.1")
    assert local.returncode == 0, local.stdout + local.stderr
    assert (fresh / "out" / "review-sentiment.jsonl").is_file()
    again = json.loads(ci.batchrun(fresh, "--env", env, "plan", "--json").stdout)
    assert again["manifests"][0]["rows"]["done"] == 3 and not again["has_changes"]


# --- the README a newcomer follows ---------------------------------------------------------------

README = (REPO / "README.md").read_text(encoding="utf-8")


def test_the_readme_installs_this_project_by_its_own_name() -> None:
    """`batchrun` on the package index is another project: every pip install in the README names
    this distribution (or the clone) and an extra pyproject.toml defines."""
    import tomllib

    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = set(meta["optional-dependencies"])
    installs = re.findall(r"pip install ['\"]?([^'\"`\s]+)", README)
    assert len(installs) >= 4
    for spec in installs:
        name, _, extra = spec.partition("[")
        if name in ("torch==2.13.0", "-e"):
            continue
        assert name in (meta["name"], ".") or name.endswith(".whl"), spec
        assert set(extra.rstrip("]").split(",")) - {""} <= extras, spec


def test_the_readme_names_only_environments_init_defines(tmp_path: Path) -> None:
    assert batchrun(tmp_path, "init", "proj").returncode == 0
    defined = set(yaml.safe_load((tmp_path / "proj" / "batchrun.yaml").read_text())["environments"])
    named = set(re.findall(r"--env[ =]([a-z][\w-]*)", README))
    assert named and named <= defined, named


def test_the_readme_first_day_runs_verbatim(tmp_path: Path) -> None:
    """The offline half of "Your first day", as written, in a fresh folder with a fresh HOME."""
    block = README.split("<!-- first-day -->", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    assert block.startswith("batchrun init")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "batchrun"
    shim.write_text(f"#!/bin/sh\nPYTHONPATH={shlex.quote(str(REPO))} exec "
                    f"{shlex.quote(sys.executable)} -m runner \"$@\"\n")
    shim.chmod(0o755)
    (tmp_path / "home").mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("BATCHRUN_") and k != "STORAGE_EMULATOR_HOST"}
    env.update(HOME=str(tmp_path / "home"), PATH=f"{bin_dir}:{os.environ['PATH']}")
    done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", block],
                          cwd=tmp_path, env=env, text=True, capture_output=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Done: 3 rows answered." in done.stdout
    assert (tmp_path / "my-batches" / "out" / "review-sentiment.jsonl").is_file()

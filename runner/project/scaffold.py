"""What `batchrun init` writes: a commented batchrun.yaml, one example manifest with its data, the
.gitignore lines, the CI workflow and the JSON Schemas editors check against. Refuses to overwrite
and to write through a link; writes nothing until it knows it can write everything."""

from __future__ import annotations

import contextlib
import errno
import os
from importlib import resources
from pathlib import Path
from typing import Final

from runner.errors import ConfigError, error
from runner.models import catalog
from runner.models import rules as modelrules
from runner.project.schemas import schema_path
from runner.project.settings import new_project_id
from runner.spec import Family, ModelRef, Task

SCHEMA_DIR: Final = ".batchrun-schemas"
IGNORED: Final = (".batchrun/", "out/")
DEFAULT_MODEL: Final = "anthropic/claude-haiku-4-5@20251001"

PROJECT: Final = f"""\
# yaml-language-server: $schema={SCHEMA_DIR}/project.v1.json
# batchrun project settings. Every manifest below this folder belongs to this project, wherever
# batchrun runs from. Reference: `batchrun schema project`, or the README.

id: PROJECT_ID
# ^ this project's own id: labels its jobs and names its folder under staging, so projects sharing
#   a Google Cloud project or staging bucket never take each other's jobs. Keep it; copy it to no
#   other project.
backend: local        # offline: jobs run on this machine with the executors below
manifests: [manifests]

local:
  executor: {{type: echo}}   # echo answers every row with its own prompt: checks the plumbing
  # Point models at a real endpoint when you have one:
  # models:
  #   "meta/*": {{type: openai, base_url: "http://127.0.0.1:8000/v1", api_key_env: VLLM_KEY}}
  #   "anthropic/*": {{type: anthropic, base_url: "https://api.anthropic.com",
  #                   api_key_env: ANTHROPIC_API_KEY}}

quota:
  max_concurrent_jobs: 4

# `batchrun --env vertex plan` runs the same manifests on Vertex AI batch prediction
# (pip install 'batchrun-vertex[gcp]', then `gcloud auth application-default login`); the CI
# workflow (.github/workflows/batchrun.yml) plans and applies this environment. Replace
# my-gcp-project and my-bucket here and in the manifests' destinations.
environments:
  vertex:
    backend: vertex
    project: my-gcp-project            # your Google Cloud project id
    region: REGION                     # where this model's batch jobs run
    staging: gs://my-bucket/batchrun   # a bucket batchrun may write its inputs to
"""

MANIFEST: Final = f"""\
# yaml-language-server: $schema=../{SCHEMA_DIR}/manifest.v1.json
# One manifest: which rows, through which prompt, to which model, and where the answers land.
apiVersion: batchrun/v1
kind: BatchJob
metadata:
  name: review-sentiment            # unique in the project; lowercase, digits, - and _
spec:
  model: MODEL
  parameters: {{PARAMETERS}}
  source:
    file: data/reviews.csv          # relative to this file
    id: review_id                   # the column that identifies a row
  prompt:
    system: Answer with one word, positive, negative or mixed.
    user: "{{{{ product }}}}: {{{{ text }}}}"
  passthrough: [product]            # source columns copied into every result row
  destination:
    file: ../out/review-sentiment.jsonl   # local runs (echo): a file of their own, not in git
    environments:                         # `--env vertex` (CI): answers outlive the checkout
      vertex: {{gcs: {{prefix: "gs://my-bucket/results/review-sentiment/"}}}}
"""

DATA: Final = """\
review_id,product,text
r1,Kettle,Boils fast and looks great.
r2,Kettle,Stopped working after a week.
r3,Toaster,Toasts evenly but the lever is stiff.
"""

NEXT: Final = """\
Next:
  batchrun validate                       # every manifest error at once
  batchrun plan                           # what apply would send, and what it would cost
  batchrun apply --auto-approve --wait    # answer every row (echo, offline)"""


def _workflow() -> str:
    packaged = resources.files("runner") / "data" / "github-actions.yml"
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    checkout = Path(__file__).resolve().parents[2] / "docs" / "ci" / "github-actions.yml"
    return checkout.read_text(encoding="utf-8")


def _chat_model(name: str) -> ModelRef:
    """The model the example manifest names: a chat model the catalogue knows."""
    model = catalog.parse_model(name)
    if model is None or catalog.known_task(model) is not Task.CHAT:
        raise ConfigError([error(f'"{name}" is not a chat model in batchrun\'s catalogue',
                                 hint="pick one from `batchrun models --task chat`")])
    return model


def _parameters(model: ModelRef) -> str:
    """Only what the model takes, under its family's names: a parameter it refuses would fail
    every row (Gemini's are generationConfig's)."""
    if catalog.family_of(model, Task.CHAT) is Family.GEMINI:
        return "maxOutputTokens: 64, temperature: 0"
    fields = ["max_tokens: 16"]
    if modelrules.accepts(model, "temperature"):
        fields.append("temperature: 0")
    return ", ".join(fields)


def files(folder: Path, model: str = DEFAULT_MODEL) -> dict[Path, str]:
    """Every file init writes, with its text (the .gitignore is handled apart: it may exist)."""
    ref = _chat_model(model)
    region = next(iter(catalog.batch_regions(ref)), "us-east5")
    project = PROJECT.replace("PROJECT_ID", new_project_id(folder.resolve())).replace(
        "REGION  ", f"{region:<8}")
    manifest = MANIFEST.replace("MODEL", model).replace("{PARAMETERS}",
                                                        "{" + _parameters(ref) + "}")
    return {
        folder / "batchrun.yaml": project,
        folder / "manifests" / "review-sentiment.yaml": manifest,
        folder / "manifests" / "data" / "reviews.csv": DATA,
        folder / ".github" / "workflows" / "batchrun.yml": _workflow(),
        folder / SCHEMA_DIR / "manifest.v1.json": schema_path("manifest.v1").read_text("utf-8"),
        folder / SCHEMA_DIR / "project.v1.json": schema_path("project.v1").read_text("utf-8"),
    }


def _link_below(folder: Path, path: Path) -> Path | None:
    """The first part of `path` below `folder` that is a symbolic link, if any. FOLDER itself is
    the user's to name."""
    current = folder
    for part in path.relative_to(folder).parts:
        current = current / part
        if current.is_symlink():
            return current
    return None


def _open_below(root: int, rel: Path, flags: int) -> int:
    """Open `rel` under the folder open as `root`, making its folders, following no symbolic link
    on the way (O_NOFOLLOW at every step): a link planted after the check is refused too."""
    fd = os.dup(root)
    try:
        for part in rel.parts[:-1]:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, dir_fd=fd)
            step = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = step
        return os.open(rel.name, flags | os.O_NOFOLLOW, 0o666, dir_fd=fd)
    finally:
        os.close(fd)


def _refuse(paths: list[Path], folder: Path) -> ConfigError:
    shown = ", ".join(f"{p.relative_to(folder)} (-> {p.readlink()})" if p.is_symlink()
                      else f"{p.relative_to(folder)} (a file with other hard links)" for p in paths)
    return ConfigError([error(f"init writes nothing through a link, and these are links in "
                              f"{folder}: {shown}",
                              hint="replace them with real folders and files, or init another "
                                   "folder")])


def init(folder: Path, model: str = DEFAULT_MODEL) -> list[Path]:
    """Write a new project into `folder` (made if missing) whose example manifest uses `model`;
    refuse if any file is already there, or if any path to write goes through a symbolic link (it
    could lead out of FOLDER)."""
    planned = files(folder, model)
    ignore = folder / ".gitignore"
    links = list(dict.fromkeys(found for p in [*planned, ignore]
                               if (found := _link_below(folder, p)) is not None))
    if ignore.is_file() and not ignore.is_symlink() and ignore.stat().st_nlink > 1:
        links.append(ignore)  # appending to it would append to its other names too
    if links:
        raise _refuse(links, folder)
    taken = [p for p in planned if p.exists()]
    if taken:
        raise ConfigError([error("init never overwrites a file, and these exist: "
                                 + ", ".join(str(p) for p in taken),
                                 hint="init an empty folder, or move those files aside")])
    folder.mkdir(parents=True, exist_ok=True)
    root = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for path, text in planned.items():
            _write(root, path.relative_to(folder), text, folder, os.O_CREAT | os.O_EXCL)
        try:
            with os.fdopen(_open_below(root, Path(".gitignore"), os.O_RDONLY), "rb") as fh:
                text = fh.read().decode("utf-8")
        except FileNotFoundError:
            text = ""
        missing = [line for line in IGNORED if line not in text.splitlines()]
        if missing:
            prefix = "\n" if text and not text.endswith("\n") else ""
            _write(root, Path(".gitignore"), prefix + "# batchrun: local job state and results\n"
                   + "".join(f"{line}\n" for line in missing), folder, os.O_CREAT | os.O_APPEND)
    finally:
        os.close(root)
    return [*planned, ignore]


def _write(root: int, rel: Path, text: str, folder: Path, flags: int) -> None:
    try:
        fd = _open_below(root, rel, os.O_WRONLY | flags)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # a link planted since the check
            raise _refuse([folder / rel], folder) from None
        raise
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)

"""What `batchrun init` writes: a commented batchrun.yaml, one example manifest with its data, the
.gitignore lines, the CI workflow and the JSON Schemas editors check against. Refuses to overwrite;
writes nothing until it knows it can write everything."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Final

from runner.errors import ConfigError, error
from runner.schemas import schema_path
from runner.settings import new_project_id

SCHEMA_DIR: Final = ".batchrun-schemas"
IGNORED: Final = (".batchrun/", "out/")

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
    region: us-east5                   # where Claude batch jobs run
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
  model: anthropic/claude-haiku-4-5@20251001
  parameters: {{max_tokens: 16, temperature: 0}}
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
    checkout = Path(__file__).resolve().parent.parent / "docs" / "ci" / "github-actions.yml"
    return checkout.read_text(encoding="utf-8")


def files(folder: Path) -> dict[Path, str]:
    """Every file init writes, with its text (the .gitignore is handled apart: it may exist)."""
    return {
        folder / "batchrun.yaml": PROJECT.replace("PROJECT_ID", new_project_id(folder.resolve())),
        folder / "manifests" / "review-sentiment.yaml": MANIFEST,
        folder / "manifests" / "data" / "reviews.csv": DATA,
        folder / ".github" / "workflows" / "batchrun.yml": _workflow(),
        folder / SCHEMA_DIR / "manifest.v1.json": schema_path("manifest.v1").read_text("utf-8"),
        folder / SCHEMA_DIR / "project.v1.json": schema_path("project.v1").read_text("utf-8"),
    }


def init(folder: Path) -> list[Path]:
    """Write a new project into `folder` (made if missing); refuse if any file is already there."""
    planned = files(folder)
    taken = [p for p in planned if p.exists()]
    if taken:
        raise ConfigError([error("init never overwrites a file, and these exist: "
                                 + ", ".join(str(p) for p in taken),
                                 hint="init an empty folder, or move those files aside")])
    for path, text in planned.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    ignore = folder / ".gitignore"
    text = ignore.read_text(encoding="utf-8") if ignore.exists() else ""
    missing = [line for line in IGNORED if line not in text.splitlines()]
    if missing:
        prefix = "\n" if text and not text.endswith("\n") else ""
        with ignore.open("a", encoding="utf-8") as fh:
            fh.write(prefix + "# batchrun: local job state and results\n"
                     + "".join(f"{line}\n" for line in missing))
    return [*planned, ignore]

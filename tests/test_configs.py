"""Every example in configs/ validates; the local ones run the whole loop on the local backend."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from runner import api
from tests.conftest import REPO

CONFIGS = REPO / "configs"


@pytest.mark.parametrize("folder", ["", "vertex"])
def test_examples_validate(folder: str) -> None:
    project = api.load_project(cwd=CONFIGS / folder, environ={})
    assert len(project.manifests) >= 3
    assert not [w for w in project.warnings if w.is_error]


def test_examples_cover_every_family_and_io_kind() -> None:
    local = api.load_project(cwd=CONFIGS, environ={}).manifests
    remote = api.load_project(cwd=CONFIGS / "vertex", environ={}).manifests
    assert {m.family.value for m in local} == {"claude", "openai-chat", "openai-embeddings",
                                               "gemini"}
    assert {m.family.value for m in remote} >= {"claude", "openai-chat", "gemini"}
    assert {m.source.kind.value for m in remote} == {"bigquery", "gcs", "file"}
    assert {m.destination.kind.value for m in remote} == {"bigquery", "gcs"}


def test_local_examples_apply_and_converge(tmp_path: Path) -> None:
    work = tmp_path / "configs"
    shutil.copytree(CONFIGS, work, ignore=shutil.ignore_patterns(".batchrun", "out"))
    project = api.load_project(cwd=work, environ={})
    final = api.converge(project, poll_interval=0.1, timeout=120)
    for m in final.manifests:
        assert (m.rows.done, m.rows.to_do, m.rows.failed) == (m.rows.total, 0, 0), m.name
    assert not api.plan(api.load_project(cwd=work, environ={})).has_changes


def _models_named_in_docs() -> set[str]:
    """Every publisher/model named in the README and the example manifests."""
    import re

    texts = [(REPO / "README.md").read_text()] + [p.read_text() for p in CONFIGS.rglob("*.yaml")]
    pattern = re.compile(
        r"\b((?:anthropic|meta|openai|qwen|deepseek-ai|intfloat|google)/[a-z0-9.@-]+)")
    return {m for text in texts for m in pattern.findall(text)}


def test_every_example_and_readme_model_is_current_in_the_catalogue() -> None:
    """Issue 14: nothing a newcomer copies names a deprecated, retired or unknown model, unless
    no model of its family is known to be current (issue 23: open embedding models; Gemini's are
    another family, another format), and then validate says so."""
    from runner.models import catalog
    from runner.spec import Task

    named = _models_named_in_docs()
    assert len(named) >= 4
    for name in sorted(named):
        model = catalog.parse_model(name)
        assert model is not None, name
        entry = catalog.entry(model)
        assert entry is not None, f"{name} is not in the catalogue"
        if entry["status"] != "current":  # issue 23: only where no model of its family is current
            task = Task(entry["task"])
            family = catalog.family_of(model, task)
            current = [m for m in catalog.models_of(task)
                       if catalog.family_of(catalog.parse_model(m), task) is family]  # type: ignore[arg-type]
            assert not current, f"{name} is {entry['status']}; {current} are current"
            assert entry["status"] == "deprecated", f"{name} is {entry['status']}"
        assert entry["sources"] and entry["checked"], name
        assert catalog.batch_regions(model), name


def test_every_catalogue_entry_and_price_names_its_source_and_date() -> None:
    import json

    from runner.models import catalog

    models = json.loads((REPO / "runner" / "data" / "models.json").read_text())["models"]
    prices = json.loads((REPO / "runner" / "data" / "pricing.json").read_text())
    for name, entry in models.items():
        assert entry["status"] in catalog.STATUSES, name
        assert entry["sources"] and entry["checked"], name
        assert entry["status"] == "current" or catalog.lifecycle_problem(
            catalog.parse_model(name)) is not None  # type: ignore[arg-type]
    for name, price in prices.items():
        if not name.startswith("_"):
            assert price["sources"] and price["checked"], name


def test_every_source_the_vertex_examples_read_is_seeded_by_try_vertex() -> None:
    """An example added to configs/vertex without its seed would fail `make try-vertex`."""
    from runner.devtools import tryvertex

    project = api.load_project(cwd=CONFIGS / "vertex", environ={})
    sources = {m.source.location for m in project.manifests if m.source.kind.value != "file"}
    seeded = set(tryvertex.SEEDS)
    for source in sources:
        assert any(tryvertex.seeds_source(place, source) for place in seeded), source
    for data in tryvertex.SEEDS.values():
        assert (CONFIGS / "data" / data).is_file(), data


def test_make_try_vertex_makes_what_the_examples_name_and_runs_every_flow(tmp_path: Path) -> None:
    """`make try-vertex` is `python -m runner.tryvertex`: on a copy of configs/, with every
    download refused (a proxy nobody listens on), every example passes doctor, is applied, and
    what was made is printed with where to look."""
    import os
    import subprocess
    import sys

    work = tmp_path / "configs"
    shutil.copytree(CONFIGS, work, ignore=shutil.ignore_patterns(".batchrun", "out"))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("BATCHRUN_") and k != "STORAGE_EMULATOR_HOST"}
    nowhere = "http://127.0.0.1:9"
    env.update(PYTHONPATH=str(REPO), HTTP_PROXY=nowhere, HTTPS_PROXY=nowhere, http_proxy=nowhere,
               https_proxy=nowhere, NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    done = subprocess.run([sys.executable, "-m", "runner.devtools.tryvertex", "--configs", str(work)],
                          cwd=tmp_path, env=env, text=True, capture_output=True, timeout=300,
                          check=False)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    for made in ("bucket gs://my-batchrun-staging", "bucket gs://my-batchrun-data",
                 "dataset my-gcp-project.shop (us-east5)",
                 "dataset my-gcp-project.catalog (us-central1)",
                 "table my-gcp-project.shop.reviews: 4 rows",
                 "gs://my-batchrun-data/questions/part-1.jsonl: 3 rows"):
        assert made in out, made
    doctor = out.split("$ batchrun doctor", 1)[1].split("$ batchrun", 1)[0]
    assert "✗" not in doctor and doctor.count("✓") >= 8, doctor
    for name, place, rows in (("bigquery-reviews", "my-gcp-project.shop.review_sentiment", 4),
                              ("gcs-llama", "gs://my-batchrun-data/answers/results.jsonl", 3),
                              ("csv-embeddings", "my-gcp-project.catalog.product_vectors", 3)):
        assert f"{name}: {rows} answers in {place}" in out, name
    assert "r-1: Kettle K2 (4/5): Boils fast" in out and "q-1: Answer briefly:" in out
    assert "make try-vertex KEEP=1" in out  # where to look, with the emulators still up

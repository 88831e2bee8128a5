"""`make try-vertex`: the shipped Google Cloud examples (configs/vertex) on the emulators in one
command. Starts them, makes the buckets, datasets and tables the examples name and seeds them from
configs/data, then runs `batchrun doctor`, `apply --wait`, `status` and `results` as a user would,
and prints what it made and where to look. Never part of a real run; downloads nothing."""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from runner import api
from runner.devtools.emulators import REPO, serve, wait_for_interrupt
from runner.observe.doctor import datasets_of
from runner.spec import DestinationKind, Manifest

# What each source of the examples reads, and the file of configs/data it is seeded from. A new
# example with a BigQuery or Cloud Storage source needs its seed here (tests/test_configs.py).
SEEDS: Final = {
    "my-gcp-project.shop.reviews": "reviews.jsonl",
    "gs://my-batchrun-data/questions/part-1.jsonl": "questions.jsonl",
}
_TYPES: Final = {bool: "BOOL", int: "INT64", float: "FLOAT64", str: "STRING"}

Say = Callable[[str], None]


def seeds_source(place: str, source: str) -> bool:
    """Does the seed at `place` (a table, or a gs:// object) feed `source` (a table or a glob)?"""
    return place == source or (source.startswith("gs://") and fnmatch.fnmatchcase(place, source))


def _buckets(project: api.Project) -> list[str]:
    places = [project.settings.staging or ""]
    for m in project.manifests:
        places += [*m.source.uris, m.source.location, m.destination.location]
    return sorted({p[5:].split("/")[0] for p in places if p.startswith("gs://")})


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def seed(project: api.Project, data: Path, say: Say) -> None:
    """Make every bucket and dataset the examples name (datasets where their jobs run) and load the
    seeds into the sources they feed, through the emulators the environment variables name."""
    from google.cloud import bigquery

    from runner.backends.stores import bq as bq_client
    from runner.backends.stores import gcs as gcs_client

    if not all(os.environ.get(k) for k in ("STORAGE_EMULATOR_HOST", "BATCHRUN_BIGQUERY_ENDPOINT",
                                           "BATCHRUN_VERTEX_ENDPOINT")):
        raise SystemExit("try-vertex seeds the emulators only, never a real Google Cloud project")
    gcs = gcs_client.make_client()
    bq = bq_client.make_client(project.settings.project or "my-gcp-project")
    retry = bigquery.DEFAULT_RETRY.with_deadline(10)  # the client's default retries 5xx for 10 min
    for bucket in _buckets(project):
        if gcs.lookup_bucket(bucket) is None:
            gcs.create_bucket(bucket)
        say(f"  bucket gs://{bucket}")
    for dataset, region in sorted(datasets_of(project.manifests).items()):
        made = bigquery.Dataset(dataset)
        made.location = region
        bq.create_dataset(made, exists_ok=True, retry=retry)
        say(f"  dataset {dataset} ({region})")
    for place, file in SEEDS.items():
        rows = _rows(data / file)
        if place.startswith("gs://"):
            bucket, _, path = place[5:].partition("/")
            gcs.bucket(bucket).blob(path).upload_from_filename(str(data / file))
            say(f"  {place}: {len(rows)} rows, from configs/data/{file}")
            continue
        schema = [bigquery.SchemaField(k, _TYPES[type(v)]) for k, v in rows[0].items()]
        config = bigquery.LoadJobConfig(schema=schema, source_format="NEWLINE_DELIMITED_JSON",
                                        write_disposition="WRITE_TRUNCATE")
        bq.load_table_from_json(rows, place, job_config=config).result(timeout=60)
        say(f"  table {place}: {len(rows)} rows, from configs/data/{file}")


def _batchrun(folder: Path, say: Say, *args: str) -> None:
    say(f"\n$ batchrun {' '.join(args)}")
    done = subprocess.run([sys.executable, "-m", "runner", *args], cwd=folder, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600,
                          check=False)
    say(done.stdout.rstrip())
    if done.returncode != 0:
        raise SystemExit(f"try-vertex: `batchrun {' '.join(args)}` exited {done.returncode}")


def _place(m: Manifest) -> str:
    if m.destination.kind is DestinationKind.GCS:
        return m.destination.location + "results.jsonl"
    return m.destination.location


def _made(project: api.Project, say: Say) -> None:
    say("\nWhat it made (`batchrun results NAME` shows every row):")
    for m in project.manifests:
        rows = sorted((r for r in api.results(project, m.name) if r.get("status") == "succeeded"),
                      key=lambda r: str(r.get("custom_id")))  # a table's rows come in no order
        say(f"  {m.name}: {len(rows)} answers in {_place(m)}\n"
            f"      {m.source.kind.value} → {m.model.short} → {m.destination.kind.value}")
        if rows:
            answer = " ".join(str(rows[0].get("output")).split())
            say(f"      {rows[0]['custom_id']}: {answer[:80] + '…' if len(answer) > 80 else answer}")


def walk(folder: Path, say: Say = print) -> None:
    """Seed the emulators the environment variables name for the examples in `folder`, then run
    doctor, apply --wait and status, and show what each example made."""
    project = api.load_project(cwd=folder)
    say(f"Made on the emulators, for the examples in {folder}:")
    seed(project, folder.parent / "data", say)
    _batchrun(folder, say, "doctor")
    _batchrun(folder, say, "apply", "--auto-approve", "--wait", "--poll-interval", "0.5",
              "--timeout", "300")
    _batchrun(folder, say, "status")
    _made(project, say)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m runner.tryvertex", description=__doc__)
    parser.add_argument("--configs", type=Path, default=REPO / "configs",
                        help="the examples folder (its vertex/ and data/)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the emulators up afterwards, until Ctrl-C")
    args = parser.parse_args(argv)
    folder = args.configs.resolve() / "vertex"
    if not (folder / "batchrun.yaml").is_file():
        raise SystemExit(f"try-vertex: no examples at {folder} (its batchrun.yaml is missing); "
                         "pass --configs FOLDER, the folder holding vertex/ and data/")
    started = time.monotonic()

    def run(env: dict[str, str], work: Path) -> None:
        os.environ.update(env)  # this process and every batchrun it runs talk to the emulators
        walk(folder, lambda text: print(text, flush=True))
        print(f"\nDone in {time.monotonic() - started:.0f} s. The emulators hold everything in "
              f"memory (logs in {work}).")
        if not args.keep:
            print("To look around yourself, run `make try-vertex KEEP=1`: it keeps them up, then\n"
                  f"  cd {folder}  (with the exports it prints)\n"
                  "  batchrun status; batchrun results bigquery-reviews; batchrun plan")
            return
        print("They stay up until Ctrl-C. In another shell:")
        for key, value in env.items():
            print(f"  export {key}={value}")
        print(f"  cd {folder}\n  batchrun status; batchrun results bigquery-reviews; batchrun plan",
              flush=True)
        wait_for_interrupt()

    serve("batchrun-try-vertex-", run)

if __name__ == "__main__":
    main()

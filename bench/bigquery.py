"""`make bench`'s BigQuery line (issue 15): plan a BigQuery source of 1M rows with 1k new into a
BigQuery table, against the emulator, counting the source rows that reach the client beside the
naive way (every row pulled, as before: `list_rows`)."""

from __future__ import annotations

import os
import secrets
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

PROJECT = "batchrun-test"


def _rows_sql(first: int, last: int) -> str:
    return (f"SELECT CONCAT('r', CAST(n AS STRING)) AS id, CONCAT('ticket body number ', "
            f"CAST(n AS STRING), ' about a refund') AS text, n AS n "
            f"FROM UNNEST(GENERATE_ARRAY({first}, {last})) AS n")


def bigquery_plan(rows: int = 1_000_000, new: int = 1_000) -> dict[str, Any]:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery, storage

    from runner import api
    from runner.backends.stores.bqsource import FP, fingerprinted, schema_salt
    from runner.devtools.emulators import Emulators

    with tempfile.TemporaryDirectory(prefix="batchrun-bench-bq-") as tmp:
        root = Path(tmp)
        emulators = Emulators(root)
        try:
            env = emulators.start()
            os.environ.update(env)
            bq = bigquery.Client(project=PROJECT, credentials=AnonymousCredentials(),
                                 client_options={"api_endpoint": env["BATCHRUN_BIGQUERY_ENDPOINT"]})
            gcs = storage.Client(project=PROJECT, credentials=AnonymousCredentials(),
                                 client_options={"api_endpoint": env["STORAGE_EMULATOR_HOST"]})
            suffix = secrets.token_hex(3)
            gcs.create_bucket(f"bench-{suffix}")
            dataset = bigquery.Dataset(f"{PROJECT}.bench_{suffix}")
            dataset.location = "us-east5"
            bq.create_dataset(dataset)
            source, dest = f"{PROJECT}.bench_{suffix}.notes", f"{PROJECT}.bench_{suffix}.labels"
            (root / "p").mkdir()
            (root / "p" / "batchrun.yaml").write_text(
                f"backend: vertex\nproject: {PROJECT}\nregion: us-east5\n"
                f"staging: gs://bench-{suffix}/staging\n")
            (root / "p" / "notes.yaml").write_text(textwrap.dedent(f"""\
                apiVersion: batchrun/v1
                kind: BatchJob
                metadata: {{name: notes}}
                spec:
                  model: anthropic/claude-haiku-4-5@20251001
                  parameters: {{max_tokens: 20}}
                  source: {{bigquery: {{table: {source}}}, id: id}}
                  prompt: {{user: "Label: {{{{ text }}}}"}}
                  destination: {{bigquery: {{table: {dest}}}}}
                """))
            bq.query(f"CREATE TABLE `{source}` AS {_rows_sql(1, rows - new)}").result(timeout=600)
            spec = api.load_project(cwd=root / "p").manifest("notes").spec_hash
            salt = schema_salt(bq.get_table(source).schema)
            config = bigquery.QueryJobConfig(query_parameters=[
                bigquery.ScalarQueryParameter("salt", "STRING", salt)])
            # The answered rows as a collect records them (real answers would take the fake
            # Vertex server an hour at this size).
            bq.query(f"CREATE TABLE `{dest}` AS SELECT id AS custom_id, 'succeeded' AS status, "
                     f"'{spec}' AS spec_hash, 'recorded' AS request_hash, {FP} AS source_fp, "
                     f"'label' AS output, CAST(1 AS INT64) AS attempts FROM "
                     f"({fingerprinted(f'`{source}`')})", job_config=config).result(timeout=600)
            bq.query(f"INSERT INTO `{source}` (id, text, n) {_rows_sql(rows - new + 1, rows)}"
                     ).result(timeout=600)

            project = api.load_project(cwd=root / "p")
            backend = api.open_backend(project)
            started = time.perf_counter()
            plan = api.plan(project, backend=backend)
            seconds = time.perf_counter() - started
            counts = plan.manifest("notes").rows
            pulled = backend.bq.pulled  # type: ignore[attr-defined]

            started = time.perf_counter()
            naive = sum(1 for _ in bq.list_rows(source, page_size=10_000))
            naive_seconds = time.perf_counter() - started
        finally:
            emulators.stop()
            for key in ("STORAGE_EMULATOR_HOST", "BATCHRUN_BIGQUERY_ENDPOINT",
                        "BATCHRUN_VERTEX_ENDPOINT"):
                os.environ.pop(key, None)
    return {"rows": rows, "new": new, "plan_seconds": seconds, "to_do": counts.to_do,
            "done": counts.done, "pulled": pulled, "naive_pulled": naive,
            "naive_seconds": naive_seconds}


def bigquery_line(r: dict[str, Any]) -> str:
    ok = r["pulled"] <= r["new"] + 10 and r["to_do"] == r["new"]
    return (f"plan, BigQuery source {r['rows']:,} rows with {r['new']:,} new (emulator)   "
            f"{r['plan_seconds']:.1f} s, {r['to_do']:,} to do, source rows pulled "
            f"{r['pulled']:,}   naive (list_rows, every row) {r['naive_pulled']:,} rows in "
            f"{r['naive_seconds']:.1f} s   target ≤ {r['new']:,} + a constant: "
            f"{'met' if ok else 'MISSED'}")

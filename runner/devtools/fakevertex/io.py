"""Reads job inputs from and writes outputs to the Cloud Storage and BigQuery emulators, where and how
Vertex does (reference §8-§10), through the real Google client libraries."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson


def storage_client() -> Any:
    from runner.backends.stores.gcs import make_client

    return make_client()


def bigquery_client(project: str) -> Any:
    from runner.backends.stores.bq import make_client

    return make_client(project)


def split_gs(uri: str) -> tuple[str, str]:
    bucket, _, path = uri.removeprefix("gs://").partition("/")
    return bucket, path


def split_bq(uri: str) -> tuple[str, str, str]:
    project, dataset, table = uri.removeprefix("bq://").split(".", 2)
    return project, dataset, table


def read_gcs_rows(uris: list[str]) -> Iterator[dict[str, Any]]:
    from runner.backends.stores.gcs import Gcs

    gcs = Gcs(storage_client())
    for pattern in uris:
        for uri in gcs.expand(pattern):
            for line in gcs.lines(uri):
                yield orjson.loads(line)


def read_bq_rows(uri: str) -> Iterator[dict[str, Any]]:
    from google.cloud import bigquery

    from runner.backends.stores.bq import json_or_text

    project, dataset, table = split_bq(uri)
    client = bigquery_client(project)
    retry = bigquery.DEFAULT_RETRY.with_deadline(10)
    for row in client.list_rows(f"{project}.{dataset}.{table}", retry=retry):
        yield {k: json_or_text(v) for k, v in dict(row).items()}


def write_gcs_output(directory: str, lines: list[bytes]) -> None:
    bucket, path = split_gs(directory)
    blob = storage_client().bucket(bucket).blob(f"{path.rstrip('/')}/predictions.jsonl")
    blob.upload_from_string(b"".join(line + b"\n" for line in lines),
                            content_type="application/jsonl")


def write_bq_output(uri: str, rows: list[dict[str, Any]], claude: bool) -> tuple[str, str]:
    """Write output rows to the table of `uri` (created if absent); returns (dataset URI, table)."""
    from google.cloud import bigquery

    project, dataset, table = split_bq(uri)
    client = bigquery_client(project)
    retry = bigquery.DEFAULT_RETRY.with_deadline(10)
    fields = [bigquery.SchemaField("custom_id", "STRING")]
    extra = sorted({k for r in rows for k in r} - {"custom_id", "response", "status", "id",
                                                  "error", "method", "url"})
    fields += [bigquery.SchemaField(k, "JSON" if k in ("request", "body") else "STRING")
               for k in extra]
    fields += [bigquery.SchemaField("response", "JSON")]
    fields += ([bigquery.SchemaField("status", "STRING")] if claude else
               [bigquery.SchemaField("id", "STRING"), bigquery.SchemaField("error", "STRING")])
    ref = f"{project}.{dataset}.{table}"
    client.create_table(bigquery.Table(ref, schema=fields), exists_ok=True, retry=retry)
    payload = []
    for r in rows:
        out = {f.name: r.get(f.name) for f in fields}
        for key in extra:
            if key not in ("request", "body") and out[key] is not None and not isinstance(
                    out[key], str):
                out[key] = orjson.dumps(out[key]).decode()
        if not claude and out.get("error") is not None and not isinstance(out["error"], str):
            out["error"] = orjson.dumps(out["error"]).decode()
        payload.append(out)
    if payload:
        config = bigquery.LoadJobConfig(schema=fields, source_format="NEWLINE_DELIMITED_JSON",
                                        write_disposition="WRITE_APPEND")
        client.load_table_from_json(payload, ref, job_config=config).result(
            timeout=60)
    return f"bq://{project}.{dataset}", table

"""The background process that runs one local job: RUNNING, answer each row, SUCCEEDED.

Started detached by LocalBackend.create_job, so it outlives the CLI. Output lands all at once, as
on Vertex for partner models: a cancelled job leaves none.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from runner.backends.base import JobState
from runner.backends.local.executors import FACTORIES
from runner.backends.local.store import JobStore, now_rfc3339
from runner.backends.localfiles import atomic_writer
from runner.redact import redact
from runner.spec import ExecutorSpec, Family


def _failed_status(line: dict[str, Any]) -> bool:
    return bool(line.get("status")) or line.get("error") is not None


def run_job(state_dir: Path, job_id: str) -> None:
    store = JobStore(state_dir)
    record = store.read(job_id)
    local = record["_local"]
    local["pid"] = os.getpid()
    record["state"] = JobState.RUNNING.value
    record["startTime"] = now_rfc3339()
    store.write(job_id, record)
    spec = ExecutorSpec(**{**local["executor"], "fail_ids": tuple(local["executor"]["fail_ids"])})
    family = Family(local["family"])
    execute = FACTORIES[spec.type](spec, family, record["model"])
    input_path = Path(record["inputConfig"]["gcsSource"]["uris"][0])
    sent_log = state_dir / "sent.jsonl"
    rows = (orjson.loads(line) for line in input_path.open("rb") if line.strip())
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    out_dir = Path(record["outputConfig"]["gcsDestination"]["outputUriPrefix"]) / (
        f"prediction-model-{stamp}")
    ok = failed = 0

    def answer(row: dict[str, Any]) -> bytes:
        # One append per row: the executor's own record of what was sent, for the crash tests.
        with sent_log.open("ab") as log:
            log.write(orjson.dumps({"job": job_id, "custom_id": row.get("custom_id")}) + b"\n")
        return orjson.dumps(execute(row))

    with atomic_writer(out_dir / "predictions.jsonl") as out:
        workers = spec.concurrency if spec.type in ("openai", "anthropic") else 1
        with ThreadPoolExecutor(max_workers=workers) as pool:
            pending = []
            for row in rows:
                if store.cancel_marker(job_id).exists():
                    break
                pending.append(pool.submit(answer, row))
                if len(pending) >= workers * 4:
                    line = pending.pop(0).result()
                    out.write(line + b"\n")
                    ok, failed = _count(line, ok, failed)
            for future in pending:
                line = future.result()
                out.write(line + b"\n")
                ok, failed = _count(line, ok, failed)
        if store.cancel_marker(job_id).exists():
            raise _Cancelled
    record["state"] = JobState.SUCCEEDED.value
    record["endTime"] = now_rfc3339()
    record["completionStats"] = {"successfulCount": str(ok), "failedCount": str(failed)}
    record["outputInfo"] = {"gcsOutputDirectory": str(out_dir)}
    store.write(job_id, record)


class _Cancelled(Exception):
    pass


def _count(line: bytes, ok: int, failed: int) -> tuple[int, int]:
    if _failed_status(orjson.loads(line)):
        return ok, failed + 1
    return ok + 1, failed


def main(argv: list[str]) -> int:
    state_dir, job_id = Path(argv[0]), argv[1]
    store = JobStore(state_dir)
    try:
        run_job(state_dir, job_id)
    except _Cancelled:
        record = store.read(job_id)
        record.update(state=JobState.CANCELLED.value, endTime=now_rfc3339(),
                      error={"code": 1, "message": "CANCELED"})
        store.write(job_id, record)
    except Exception as exc:  # the job fails; the record says why, the CLI never sees a traceback
        record = store.read(job_id)
        record.update(state=JobState.FAILED.value, endTime=now_rfc3339(),
                      error={"code": 13, "message": redact(f"{type(exc).__name__}: {exc}")})
        store.write(job_id, record)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

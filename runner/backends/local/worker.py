"""The background process that runs one local job: RUNNING, answer each row, SUCCEEDED.

Started detached by LocalBackend.create_job, so it outlives the CLI. Each answer is appended to the
job's output as it arrives (flushed at once, fsynced every second or few hundred rows), so a worker
that dies loses only the rows in flight; the output folder is recorded before the first row, so a
failed, cancelled or killed job's answers are found and collected like any other's. A cancel is
looked for every POLL_SECONDS while rows are in flight, and stops their requests mid-way.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson

from runner import crashpoints
from runner.backends.base import JobState
from runner.backends.local.endpoint import EndpointError, InFlight, Stopped
from runner.backends.local.executors import FACTORIES, Batched, Execute, echo_json
from runner.backends.local.store import HEARTBEAT_EVERY, WORKER_URL_ENV, JobStore, now_rfc3339
from runner.backends.processes import pid_space, process_start
from runner.redact import (
    masked_url,
    might_hold_secret,
    redact,
    remember,
    secret_values,
    url_secrets,
)
from runner.rpc import Code
from runner.spec import ExecutorSpec, Family

SYNC_SECONDS = 1.0
RECORD_SENT_ENV = "BATCHRUN_RECORD_SENT"  # "1": keep .batchrun/sent.jsonl (tests only)
SYNC_ROWS = 200
POLL_SECONDS = 0.25  # how often a worker waiting on its rows looks for a cancel


class _Cancelled(Exception):
    pass


class _Output:
    """Append-only answers: each line flushed as it is written, fsynced now and then."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        self.ok = self.failed = 0
        self._unsynced = 0
        self._synced_at = time.monotonic()

    def write(self, line: bytes) -> None:
        self.fh.write(line + b"\n")
        self.fh.flush()
        data = orjson.loads(line)
        if data.get("status") or data.get("error") is not None:
            self.failed += 1
        else:
            self.ok += 1
        self._unsynced += 1
        if self._unsynced >= SYNC_ROWS or time.monotonic() - self._synced_at >= SYNC_SECONDS:
            self.sync()
        crashpoints.reached("answered")

    def sync(self) -> None:
        os.fsync(self.fh.fileno())
        self._unsynced = 0
        self._synced_at = time.monotonic()


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as fh:
        for line in fh:
            if line.strip():
                yield orjson.loads(line)


def _executor_spec(stored: dict[str, Any]) -> ExecutorSpec:
    """The executor as the job record keeps it, with the base_url credentials the record leaves
    out taken back from this process's environment."""
    spec = ExecutorSpec(**{**stored, "fail_ids": tuple(stored["fail_ids"])})
    full_url = os.environ.get(WORKER_URL_ENV)
    if full_url and masked_url(full_url) == spec.base_url:
        spec = replace(spec, base_url=full_url)
    remember([*secret_values([spec.api_key_env]), *url_secrets(spec.base_url)])
    return spec


def _executor(local: dict[str, Any], model: str, flights: InFlight) -> tuple[Execute, int]:
    """The job's executor and how many rows it may have in flight at once."""
    spec = _executor_spec(local["executor"])
    execute = FACTORIES[spec.type](spec, Family(local["family"]), model, flights)
    response = local.get("response") or {}
    if spec.type == "echo" and response.get("format") == "json":
        execute = echo_json(execute, response.get("schema"))
    return execute, spec.concurrency if spec.type in ("openai", "anthropic") else 1


def _beat(path: Path) -> None:
    """Touch `path` now and every HEARTBEAT_EVERY seconds while this process lives: how a worker
    seen from another PID namespace is known alive (its pid means nothing there)."""
    import threading

    def beat() -> None:
        while True:
            path.touch()
            time.sleep(HEARTBEAT_EVERY)

    path.touch()
    threading.Thread(target=beat, name="heartbeat", daemon=True).start()


def run_job(state_dir: Path, job_id: str) -> None:
    store = JobStore(state_dir)
    record = store.read(job_id)
    local = record["_local"]
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    out_dir = Path(record["outputConfig"]["gcsDestination"]["outputUriPrefix"]) / (
        f"prediction-model-{stamp}")
    out_dir.mkdir(parents=True, exist_ok=True)
    local["pid"] = os.getpid()
    local["pid_start"] = process_start(os.getpid())
    local["pid_space"] = pid_space()
    _beat(store.heartbeat(job_id))
    record.update(state=JobState.RUNNING.value, startTime=now_rfc3339(),
                  outputInfo={"gcsOutputDirectory": str(out_dir)})
    store.write(job_id, record)
    flights = InFlight()  # a cancel stops the requests in flight, not only the next ones
    execute, workers = _executor(local, record["model"], flights)
    remote = local["executor"].get("type") in ("openai", "anthropic")  # sends rows to an endpoint
    input_path = Path(record["inputConfig"]["gcsSource"]["uris"][0])
    # The executor's own record of what was sent, one line a row: the tests count with it. Only
    # when one asks: in a user's project it would grow forever and tell nothing the output does.
    sent_log = state_dir / "sent.jsonl" if os.environ.get(RECORD_SENT_ENV) == "1" else None

    def answer(rows: list[dict[str, Any]]) -> list[bytes]:
        if sent_log is not None:
            with sent_log.open("ab") as log:
                log.write(b"".join(orjson.dumps({"job": job_id, "custom_id": row.get("custom_id")})
                                   + b"\n" for row in rows))
        answers = execute.batch(rows) if isinstance(execute, Batched) else [execute(rows[0])]
        lines = []
        for line in map(orjson.dumps, answers):
            text = line.decode("utf-8")
            # An endpoint may echo what it was sent, key included: our own files never hold it.
            # (An in-process model was sent nothing; scanning its 8 KB vectors cost 1.5 ms a row.)
            secret = remote and might_hold_secret(text)
            lines.append(redact(text).encode("utf-8") if secret else line)
        return lines

    with (out_dir / "predictions.jsonl").open("ab") as fh:
        out = _Output(fh)
        failure = _answer_all(_rows(input_path), answer, out, execute, workers,
                              lambda: store.cancel_marker(job_id).exists(), flights)
        out.sync()
    _finish(store, job_id, out, failure)


Answerer = Callable[[list[dict[str, Any]]], list[bytes]]


def _answer_all(pending: Iterator[dict[str, Any]], answer: Answerer, out: _Output,
                execute: Execute, workers: int, cancel_asked: Callable[[], bool],
                flights: InFlight) -> Exception | None:
    """Every row answered, `workers` at a time, each line written as its row is settled; stops
    submitting at the first job-level failure (returned) or a cancel, which also stops the
    requests in flight."""
    failure: Exception | None = None
    running: set[Future[list[bytes]]] = set()

    def settle(done: set[Future[list[bytes]]]) -> None:
        nonlocal failure
        for future in done:
            try:
                for line in future.result():
                    out.write(line)
            except Stopped:  # cancelled mid-request: no answer, the row is to do again
                pass
            except Exception as exc:  # no line: the row is to do again; others are kept
                failure = failure or exc

    def cancelled() -> bool:
        if not flights.stopped.is_set() and cancel_asked():
            flights.stop()
        return flights.stopped.is_set()

    def settle_until(running_at_most: int) -> None:
        nonlocal running
        while len(running) > running_at_most:
            done, running = wait(running, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
            settle(done)
            cancelled()

    size = execute.size if isinstance(execute, Batched) else 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        while rows := list(itertools.islice(pending, size)):
            if failure is not None or cancelled():
                break
            running.add(pool.submit(answer, rows))
            settle_until(workers - 1)
        settle_until(0)
    return failure


def _finish(store: JobStore, job_id: str, out: _Output, failure: Exception | None) -> None:
    """The job's final record: FAILED with why, CANCELLED (raised), or SUCCEEDED."""
    record = store.read(job_id)
    record["completionStats"] = {"successfulCount": str(out.ok), "failedCount": str(out.failed)}
    if failure is not None:
        code, message = ((failure.code, redact(failure.message))
                         if isinstance(failure, EndpointError)
                         else (Code.UNKNOWN.value, redact(_error_text(failure))))
        record.update(state=JobState.FAILED.value, endTime=now_rfc3339(),
                      error={"code": code, "message": message})
        store.write(job_id, record)
        return
    if store.cancel_marker(job_id).exists():
        store.write(job_id, record)
        raise _Cancelled
    record.update(state=JobState.SUCCEEDED.value, endTime=now_rfc3339())
    store.write(job_id, record)


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"local I/O error: {exc.strerror}{where}"
    return f"{type(exc).__name__}: {exc}"


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
                      error={"code": Code.UNKNOWN.value, "message": redact(_error_text(exc))})
        store.write(job_id, record)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

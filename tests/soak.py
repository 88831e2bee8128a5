"""`make soak`: the full crash and race trials (minutes; not part of `make test`), with two applies
in their own PID namespaces on Vertex (issue 21; skipped where `unshare` is refused). Prints one table:
per trial the rows failed and lost (both must be zero) and the prompts re-sent, counted by a stub
endpoint the local workers call (at most what was in flight when workers were killed). Seeded:
`--seed N`."""

from __future__ import annotations

import argparse
import random
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from runner import crashpoints
from tests import crashkit
from tests.stub_endpoint import StubServer


def local_trials(work: Path, rnd: random.Random, kills: int) -> list[crashkit.Trial]:
    trials = []
    for point in crashpoints.POINTS:
        for nth in (1, 2, 3):
            for grow in (False, True):
                with StubServer().start() as stub:
                    root = work / f"local-{point}-{nth}-{grow}"
                    crashkit.make_project(root, endpoint=stub.url)
                    # "answered" kills a worker mid-job: what it had in flight may be sent again
                    allowed = crashkit.CONCURRENCY if point == "answered" else 0
                    trial = crashkit.crash_at(root, point, nth, grow_first=grow,
                                              sent=lambda s=stub: crashkit.stub_sent(s.url),
                                              allowed=allowed)
                if trial.killed or nth == 1:
                    trials.append(trial)
    for i in range(kills):
        with StubServer().start() as stub:
            root = work / f"kill-{i}"
            crashkit.make_project(root, endpoint=stub.url)
            trials.append(crashkit.kill_after(root, rnd.uniform(0.05, 0.6),
                                              sent=lambda s=stub: crashkit.stub_sent(s.url)))
    return trials


def storm_trials(work: Path, rnd: random.Random, storms: int) -> list[crashkit.Trial]:
    """The report of issue 10: `apply --wait` killed eight times together with its workers."""
    trials = []
    for i in range(storms):
        with StubServer().start() as stub:
            stub.set_mode("ok", delay=0.01)
            root = work / f"storm-{i}"
            delays = [rnd.uniform(0.3, 2.0) for _ in range(8)]
            crashkit.make_project(root, endpoint=stub.url, rows=300,
                                  max_job_failures=len(delays) + 1)
            trials.append(crashkit.kill_storm(root, delays,
                                              sent=lambda s=stub: crashkit.stub_sent(s.url)))
    return trials


def race_trials(work: Path, count: int) -> list[crashkit.Trial]:
    trials = []
    for i in range(count):
        with StubServer().start() as stub:
            root = work / f"race-{i}"
            crashkit.make_project(root, endpoint=stub.url)
            procs = [subprocess.Popen([sys.executable, "-m", "runner", "apply", "--auto-approve"],
                                      cwd=root, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
                     for _ in range(3)]
            for p in procs:
                p.wait(timeout=120)
            jobs = len(list((root / ".batchrun" / "jobs").iterdir()))
            trials.append(crashkit.judge(root, f"race of 3 applies ({jobs} jobs)", False,
                                         lambda s=stub: crashkit.stub_sent(s.url)))
    return trials


def shared_destination_trials(work: Path) -> list[crashkit.Trial]:
    """Issue 11: two applies started at once, each of one manifest, both writing one destination:
    both are refused before anything is sent."""
    with StubServer().start() as stub:
        root = work / "shared-destination"
        crashkit.make_project(root, endpoint=stub.url)
        (root / "m2.yaml").write_text((root / "m.yaml").read_text().replace("name: m}",
                                                                            "name: m2}"))
        procs = [subprocess.Popen([sys.executable, "-m", "runner", "apply", "--auto-approve",
                                   name], cwd=root, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
                 for name in ("m.yaml", "m2.yaml")]
        refused = 0
        for p in procs:
            _, err = p.communicate(timeout=120)
            refused += p.returncode == 1 and "destination is also written by" in err
        sent = sum(crashkit.stub_sent(stub.url).values())
        jobs = root / ".batchrun" / "jobs"
        created = len(list(jobs.iterdir())) if jobs.exists() else 0
    ok = refused == 2 and sent == 0 and created == 0
    return [crashkit.Trial(f"2 applies sharing a destination: {refused} refused", 12, False,
                           0, 0, failed=0 if ok else 1, resent=sent)]


def pid_namespace_trials(work: Path, env: dict[str, str], gcs: Any,
                         count: int) -> list[crashkit.Trial]:
    """Issue 21: two `apply --wait` started together, each in its own PID namespace, one hostname,
    one project and manifest, against the Cloud Storage emulator and the fake Vertex server: every
    row executed exactly once (counted by the fake server)."""
    if not crashkit.unshare_works():
        print("pid-namespace trials skipped: `unshare --pid --fork --mount-proc` is not permitted "
              "here (needs root or user namespaces)")
        return []
    vertex = env["BATCHRUN_VERTEX_ENDPOINT"]
    trials = []
    for i in range(count):
        bucket = f"soak-{secrets.token_hex(4)}"
        gcs.create_bucket(bucket)
        requests.post(f"{vertex}/_fake/reset", timeout=10)
        root = work / f"pid-namespaces-{i}"
        crashkit.make_project(root, f"backend: vertex\nproject: soak-project\nregion: us-east5\n"
                                    f"staging: gs://{bucket}/staging\n")
        exits = [r.returncode for r in crashkit.applies_in_own_pid_namespaces(root, env)]
        trial = crashkit.judge(root, "", False, lambda: crashkit.fake_sent(vertex), env)
        trial.name = f"2 applies in own PID namespaces (exits {'/'.join(map(str, exits))})"
        trial.failed += sum(code not in (0, 1) for code in exits)  # a crash is a failure
        trials.append(trial)
    return trials


def vertex_trials(work: Path, rnd: random.Random, namespaces: int) -> list[crashkit.Trial]:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    from runner.backends.vertex.lease import LEASE_ENV
    from runner.devtools.emulators import Emulators

    emulators = Emulators(work / "emulators")
    (work / "emulators").mkdir()
    trials = []
    try:  # a server that started stops even if a later one fails to
        env = emulators.start()
        env[LEASE_ENV] = "2"  # a killed apply's lock runs out in seconds, not in a minute and a half
        gcs = storage.Client(project="p", credentials=AnonymousCredentials(),
                             client_options={"api_endpoint": env["STORAGE_EMULATOR_HOST"]})
        vertex = env["BATCHRUN_VERTEX_ENDPOINT"]
        cases = [(p, 1, g) for p in ("stage", "staged", "created", "collect", "collected",
                                      "atomic-rename") for g in (False, True)]
        for point, nth, grow in cases:
            bucket = f"soak-{secrets.token_hex(4)}"
            gcs.create_bucket(bucket)
            requests.post(f"{vertex}/_fake/reset", timeout=10)
            root = work / f"vertex-{point}-{grow}"
            crashkit.make_project(root, f"backend: vertex\nproject: soak-project\nregion: us-east5\n"
                                        f"staging: gs://{bucket}/staging\n")
            trials.append(crashkit.crash_at(root, point, nth, grow_first=grow, env=env,
                                            sent=lambda: crashkit.fake_sent(vertex)))
            trials[-1].name = "vertex " + trials[-1].name
        for i in range(4):
            bucket = f"soak-{secrets.token_hex(4)}"
            gcs.create_bucket(bucket)
            requests.post(f"{vertex}/_fake/reset", timeout=10)
            requests.post(f"{vertex}/_fake/faults", json={"create_errors": ["500-after"],
                                                          "drop_connections": 1}, timeout=10)
            root = work / f"vertex-kill-{i}"
            crashkit.make_project(root, f"backend: vertex\nproject: soak-project\nregion: us-east5\n"
                                        f"staging: gs://{bucket}/staging\n")
            trial = crashkit.kill_after(root, rnd.uniform(0.2, 1.0), env=env,
                                        sent=lambda: crashkit.fake_sent(vertex))
            trial.name = "vertex " + trial.name + " +faults"
            trials.append(trial)
        trials += pid_namespace_trials(work, env, gcs, namespaces)
    finally:
        emulators.stop()
    return trials


def main() -> int:
    parser = argparse.ArgumentParser(prog="make soak")
    parser.add_argument("--seed", type=int, default=20261121)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--races", type=int, default=5)
    parser.add_argument("--storms", type=int, default=3)
    parser.add_argument("--namespaces", type=int, default=3,
                        help="rounds of two applies in their own PID namespaces (vertex)")
    parser.add_argument("--no-vertex", action="store_true")
    args = parser.parse_args()
    rnd = random.Random(args.seed)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="batchrun-soak-") as tmp:
        work = Path(tmp)
        trials = (local_trials(work, rnd, args.kills) + storm_trials(work, rnd, args.storms)
                  + race_trials(work, args.races) + shared_destination_trials(work))
        if not args.no_vertex:
            trials += vertex_trials(work, rnd, args.namespaces)
    print(crashkit.table(trials))
    print(f"seed {args.seed}; {sum(t.killed for t in trials)} processes killed mid-apply; "
          f"{time.monotonic() - started:.0f} s")
    bad = [t for t in trials if not t.ok]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

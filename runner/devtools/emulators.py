"""Starts the three local servers the vertex backend can run against (fake Vertex, gcp-storage-emulator
with generation preconditions honoured (gcsemulator.py), local-bigquery) on free loopback
ports, waits until each answers, and stops each by its own pid.

Used by the test suite and by `make emulators`. Never part of a real run.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _wait(server: Server, path: str, ok: tuple[int, ...], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited early; see {server.log}:\n"
                               f"{server.log.read_text()[-2000:]}")
        try:
            if requests.get(server.url + path, timeout=2).status_code in ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"{server.name} did not answer within {timeout:.0f}s; see {server.log}")


def local_bigquery_bin() -> Path:
    return Path(os.environ.get("BATCHRUN_LOCAL_BIGQUERY", REPO / ".venv-bq" / "bin" / "local-bigquery"))


@dataclass
class Emulators:
    work: Path
    servers: list[Server] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def _start(self, name: str, cmd: list[str], port: int, env: dict[str, str]) -> Server:
        log = self.work / f"{name}.log"
        process = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env={**os.environ, **env},
                                   start_new_session=True)
        server = Server(name, process, f"http://127.0.0.1:{port}", log)
        self.servers.append(server)
        return server

    def start(self) -> dict[str, str]:
        gcs_port, bq_port, grpc_port, vertex_port = (free_port() for _ in range(4))
        # gcp-storage-emulator, with the generation preconditions it ignores honoured (locks)
        gcs = self._start("gcs", [sys.executable, "-m", "runner.devtools.gcsemulator", "start", "--host",
                                  "127.0.0.1", "--port", str(gcs_port), "--in-memory", "-q"],
                          gcs_port, {})
        _wait(gcs, "/", (200,))
        bq_bin = local_bigquery_bin()
        if not bq_bin.exists():
            raise RuntimeError(f"{bq_bin} is missing: run `make emulators-install`")
        home = bq_bin.parent.parent / "home"
        bq = self._start("bigquery", [str(bq_bin), "serve", "--host", "127.0.0.1", "--port",
                                      str(bq_port), "--grpc-port", str(grpc_port), "--project",
                                      "batchrun-test", "--data-dir", str(self.work / "bq")],
                         bq_port, {"HOME": str(home), "STORAGE_EMULATOR_HOST": gcs.url})
        _wait(bq, "/", (404, 200))
        self.env = {"STORAGE_EMULATOR_HOST": gcs.url, "BATCHRUN_BIGQUERY_ENDPOINT": bq.url}
        vertex = self._start("vertex", [sys.executable, "-m", "runner.devtools.fakevertex", "--port",
                                        str(vertex_port)], vertex_port, self.env)
        _wait(vertex, "/_fake/sent", (200,))
        self.env["BATCHRUN_VERTEX_ENDPOINT"] = vertex.url
        return self.env

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()
        self.servers.clear()


def serve(prefix: str, body: Callable[[dict[str, str], Path], None]) -> None:
    """Start all three servers, run `body(their environment, the logs folder)`, then stop them and
    remove their logs — on Ctrl-C or `kill` too, even while they start."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    emulators = Emulators(work)

    def stop_on_term(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop_on_term)  # `kill` stops the servers too, not just us
    try:
        body(emulators.start(), work)
    except KeyboardInterrupt:
        pass
    finally:
        emulators.stop()
        shutil.rmtree(work, ignore_errors=True)


def wait_for_interrupt() -> None:
    while True:
        time.sleep(3600)


def main() -> None:
    """`make emulators`: start all three, print the environment to export, wait for Ctrl-C."""
    def show(env: dict[str, str], work: Path) -> None:
        for key, value in env.items():
            print(f"export {key}={value}")
        print(f"# logs in {work}; Ctrl-C stops all three", flush=True)
        wait_for_interrupt()

    serve("batchrun-emulators-", show)


if __name__ == "__main__":
    main()

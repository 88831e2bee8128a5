"""HTTP for the fake Vertex AI server: the v1 REST routes (tolerating `$alt=json;enum-encoding=int`,
an empty or `{}` cancel body), google.rpc.Status errors, and control routes for tests:
POST /_fake/faults (merge settings), GET /_fake/sent (rows executed), GET /_fake/jobs,
GET /_fake/requests (the last 50, their count, and every cancel asked),
POST /_fake/reset.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import orjson

from runner.devtools.fakevertex.service import FakeVertex, Faults
from runner.devtools.fakevertex.validate import ApiError

CANONICAL = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 409: "ALREADY_EXISTS",
             412: "FAILED_PRECONDITION", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
             503: "UNAVAILABLE"}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without this, Nagle and delayed ACKs stall each
        # keep-alive answer by 40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw.strip() else {}

    def _send(self, status: int, payload: Any, raw: bytes | None = None) -> None:
        data = raw if raw is not None else orjson.dumps(payload)
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, rpc_status: str | None = None) -> None:
        self._send(status, {"error": {"code": status, "message": message,
                                      "status": rpc_status or CANONICAL.get(status, "UNKNOWN")}})

    def _route(self, method: str) -> None:
        fake = self.server.fake
        url = urlparse(self.path)
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        path = unquote(url.path)
        if path.startswith("/_fake/"):
            self._control(method, path)
            return
        fake.requests.append(f"{method} {path}")
        if fake.faults.service_disabled:
            self._service_disabled(path)
            return
        if fake.faults.drop_connections > 0:
            fake.faults.drop_connections -= 1
            self.close_connection = True
            return
        if fake.faults.slow_seconds:
            time.sleep(fake.faults.slow_seconds)
        if method == "GET" and fake.faults.malformed > 0:
            fake.faults.malformed -= 1
            self._send(200, None, raw=b'{"batchPredictionJobs": [{"name": ')
            return
        parts = path.removeprefix("/v1/").split("/")
        if len(parts) < 5 or parts[0] != "projects" or parts[2] != "locations" or (
                parts[4] not in ("batchPredictionJobs", "operations", "publishers")):
            self._error(404, f"No route for {path}")
            return
        project, location = parts[1], parts[3]
        try:
            if path.endswith("/count-tokens:rawPredict"):
                self._send(200, {"input_tokens": fake.count_tokens(self._body())})
            elif parts[4] == "operations":
                self._send(200, {"name": path.removeprefix("/v1/"), "done": True})
            elif len(parts) == 5 and method == "POST":
                self._send(200, fake.create(project, location, self._body()))
            elif len(parts) == 5 and method == "GET":
                self._send(200, fake.list_jobs(location, params))
            elif len(parts) == 6 and method == "POST" and parts[5].endswith(":cancel"):
                self._body()
                name = path.removeprefix("/v1/").removesuffix(":cancel")
                self._send(200, fake.cancel(name))
            elif len(parts) == 6 and method == "GET":
                self._send(200, fake.get(path.removeprefix("/v1/")))
            elif len(parts) == 6 and method == "DELETE":
                self._send(200, fake.delete(path.removeprefix("/v1/"), location))
            else:
                self._error(404, f"No route for {method} {path}")
        except ApiError as exc:
            if exc.status == -1:  # the connection drops after the job was made
                self.close_connection = True
                return
            self._error(exc.status, exc.message, exc.rpc_status)
        except (ValueError, KeyError) as exc:
            self._error(400, f"Invalid request: {exc}")

    def _service_disabled(self, path: str) -> None:
        """Google's answer when the API is off in the project (the shape of its 403)."""
        number = self.server.fake.project_number
        url = ("https://console.developers.google.com/apis/api/aiplatform.googleapis.com/"
               f"overview?project={number}")
        self._send(403, {"error": {
            "code": 403, "status": "PERMISSION_DENIED",
            "message": f"Vertex AI API has not been used in project {number} before or it is "
                       f"disabled. Enable it by visiting {url} then retry. If you enabled this "
                       "API recently, wait a few minutes for the action to propagate to our "
                       "systems and retry.",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SERVICE_DISABLED",
                 "domain": "googleapis.com",
                 "metadata": {"service": "aiplatform.googleapis.com",
                              "consumer": f"projects/{number}", "activationUrl": url}},
                {"@type": "type.googleapis.com/google.rpc.Help",
                 "links": [{"description": "Google developers console API activation",
                            "url": url}]}]}})

    def _control(self, method: str, path: str) -> None:
        fake = self.server.fake
        if path == "/_fake/faults" and method == "POST":
            with fake.mutex:
                for key, value in self._body().items():
                    if not hasattr(fake.faults, key):
                        self._error(400, f"unknown fault {key}")
                        return
                    setattr(fake.faults, key, value)
            self._send(200, asdict(fake.faults))
        elif path == "/_fake/sent":
            self._send(200, fake.sent)
        elif path == "/_fake/jobs" and method == "GET":
            self._send(200, list(fake.jobs.values()))
        elif path == "/_fake/jobs" and method == "POST":  # seed many jobs at once (benchmarks)
            with fake.mutex:
                for job in self._body():
                    fake.jobs[job["name"]] = job
                    fake.started[job["name"]] = time.monotonic()
                fake.version += 1
            self._send(200, {"jobs": len(fake.jobs)})
        elif path == "/_fake/requests":
            self._send(200, {"count": len(fake.requests), "requests": fake.requests[-50:],
                             "cancels": [r.split(" ", 1)[1].removeprefix("/v1/").removesuffix(
                                 ":cancel") for r in fake.requests if r.endswith(":cancel")]})
        elif path == "/_fake/reset" and method == "POST":
            with fake.mutex:
                fake.jobs.clear()
                fake.sent.clear()
                fake.requests.clear()
                fake.version += 1
                fake.regions_seen.clear()
                fake.faults = Faults()
            self._send(200, {})
        else:
            self._error(404, path)

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_DELETE(self) -> None:
        self._route("DELETE")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeVertex


def serve(host: str, port: int, project_number: str) -> None:
    server = _Server((host, port), _Handler)
    server.fake = FakeVertex(project_number)
    stop = threading.Event()

    def machine() -> None:
        while not stop.is_set():
            server.fake.tick()
            time.sleep(0.05)

    threading.Thread(target=machine, daemon=True).start()
    print(f"fake vertex listening on http://{host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    finally:
        stop.set()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m runner.fakevertex")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--project-number", default="123456789012")
    args = parser.parse_args(argv)
    try:
        serve(args.host, args.port, args.project_number)
    except KeyboardInterrupt:
        sys.exit(0)

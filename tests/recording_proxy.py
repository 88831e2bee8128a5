"""A small HTTP proxy in front of an emulator, for doctor's tests: it records every request
(method, path) so a test can tell that nothing was written, and answers testIamPermissions — Cloud
Storage's `GET .../iam/testPermissions`, BigQuery's `POST ...:testIamPermissions` — as the service
would for an identity holding only `granted`, or not at all (`iam_answers=False`: 501), as a service
that does not implement it; paths in `forbidden` are refused (403) as to an identity without the
permission."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}


class RecordingProxy:
    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.requests: list[tuple[str, str]] = []
        self.granted: set[str] | None = None  # None: the emulator's own answer
        self.iam_answers = True
        self.forbidden: set[str] = set()  # paths (without the query) answered 403, as to an
        # identity without that permission
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                proxy.requests.append((self.command, self.path))
                asks = "testPermissions" in self.path or ":testIamPermissions" in self.path
                if self.path.split("?", 1)[0] in proxy.forbidden:
                    self._send(403, {"error": {"code": 403, "message": "forbidden",
                                               "status": "PERMISSION_DENIED"}})
                    return
                if asks and not proxy.iam_answers:
                    self._send(501, {"error": {"code": 501, "message": "not implemented",
                                               "status": "UNIMPLEMENTED"}})
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in _HOP and k.lower() != "host"}
                answer = requests.request(self.command, proxy.target + self.path, data=body,
                                          headers=headers, timeout=60, allow_redirects=False)
                content = answer.content
                if asks and proxy.granted is not None and answer.ok:
                    doc = answer.json()
                    doc["permissions"] = [p for p in doc.get("permissions", [])
                                          if p in proxy.granted]
                    content = json.dumps(doc).encode()
                self.send_response(answer.status_code)
                for key, value in answer.headers.items():
                    if key.lower() not in _HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def _send(self, status: int, doc: dict[str, Any]) -> None:
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def writes(self) -> list[tuple[str, str]]:
        """Requests that could change something: any but GET, and a POST that only asks."""
        return [(m, p) for m, p in self.requests
                if m != "GET" and not (m == "POST" and ":testIamPermissions" in p)]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

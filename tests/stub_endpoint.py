"""A counting stub of an Anthropic- and OpenAI-compatible endpoint, for the failure tests and the
soak: it records every prompt it was paid for (by its text, not by batchrun's own log) and can be
told to fail: `POST /_stub/mode {"mode": "ok" | "401" | "503" | "slow", "delay": s}`;
`GET /_stub/seen` lists the prompts answered. Runs in a thread, or as `python -m tests.stub_endpoint`
(prints its URL) so a test can kill it like a real server."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _State:
    def __init__(self) -> None:
        self.mode = "ok"
        self.delay = 0.0
        self.seen: list[str] = []  # prompts answered (paid for)
        self.lock = threading.Lock()


class JsonHandler(BaseHTTPRequestHandler):
    """A quiet handler that answers JSON: the base of the test endpoints."""

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, code: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Handler(JsonHandler):
    server: StubServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # /_stub/seen
        state = self.server.state
        with state.lock:
            self._send(200, {"seen": list(state.seen), "mode": state.mode})

    def do_POST(self) -> None:
        state = self.server.state
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if self.path == "/_stub/mode":
            with state.lock:
                state.mode = body.get("mode", "ok")
                state.delay = float(body.get("delay", 0.0))
            self._send(200, {})
            return
        mode, delay = state.mode, state.delay
        if mode == "401":
            self._send(401, {"type": "error", "error": {"type": "authentication_error",
                                                        "message": "invalid x-api-key"}})
            return
        if mode == "503":
            self._send(503, {"type": "error", "error": {"type": "overloaded_error",
                                                        "message": "service unavailable"}})
            return
        if delay:
            time.sleep(delay)
        messages = body.get("messages") if isinstance(body, dict) else None
        if not messages:  # a request cut off by a killed worker
            self._send(400, {"type": "error", "error": {"message": "no messages"}})
            return
        text = str(messages[-1]["content"])
        with state.lock:
            state.seen.append(text)
        if "REFUSE" in text:  # the row's own failure: a 400 about its content
            self._send(400, {"type": "error", "error": {"type": "invalid_request_error",
                                                        "message": "this row is refused"}})
        elif self.path.endswith("/v1/messages"):
            self._send(200, {"id": "msg_1", "type": "message", "role": "assistant",
                             "content": [{"type": "text", "text": text.upper()}],
                             "stop_reason": "end_turn",
                             "usage": {"input_tokens": 3, "output_tokens": 2}})
        else:
            self._send(200, {"id": "c1", "object": "chat.completion", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text.upper()}}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2}})


class StubServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a worker killed mid-request drops its connection: expected, not worth a traceback

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.state = _State()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> StubServer:
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def __enter__(self) -> StubServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_mode(self, mode: str, delay: float = 0.0) -> None:
        with self.state.lock:
            self.state.mode, self.state.delay = mode, delay

    def seen(self) -> Counter[str]:
        with self.state.lock:
            return Counter(self.state.seen)


def main() -> None:
    server = StubServer(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    print(server.url, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

"""A counting stub of an Anthropic- and OpenAI-compatible endpoint, for the failure tests and the
soak: it records every prompt it was paid for (by its text, not by batchrun's own log) and can be
told to fail: `POST /_stub/mode {"mode": "ok" | "401" | "404" | "503" | "slow", "delay": s}`;
`GET /_stub/seen` lists the prompts answered. Hostile modes: "trickle" (one byte every `delay`
seconds, 0.5 by default, of a body that never completes), "endless" (a chunked body without end,
after `delay` seconds) and "redirect" (307 to `target` + the path). Every request that arrives is
logged with its headers (`requests()`), before any mode answers it. Runs in a thread, or as
`python -m tests.stub_endpoint` (prints its URL) so a test can kill it like a real server."""

from __future__ import annotations

import json
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _State:
    def __init__(self) -> None:
        self.mode = "ok"
        self.delay = 0.0
        self.target = ""  # where "redirect" sends requests
        self.seen: list[str] = []  # prompts answered (paid for)
        self.requests: list[dict[str, Any]] = []  # every request that arrived: path, headers, body
        self.stopped = threading.Event()  # ends the endless answers when the server stops
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
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.loads(raw or b"{}")
        if self.path == "/_stub/mode":
            with state.lock:
                state.mode = body.get("mode", "ok")
                state.delay = float(body.get("delay", 0.0))
            self._send(200, {})
            return
        with state.lock:
            state.requests.append({"path": self.path, "headers": dict(self.headers),
                                   "body": raw.decode("utf-8", "replace")})
        mode, delay = state.mode, state.delay
        if mode in ("trickle", "endless", "redirect"):
            self._hostile(mode, delay, body)
            return
        if mode == "404":
            self._send(404, {"type": "error", "error": {"type": "not_found_error",
                                                        "message": "no such route"}})
            return
        if mode == "401":
            self._send(401, {"type": "error", "error": {"type": "authentication_error",
                                                        "message": "invalid x-api-key"}})
            return
        if mode == "503":
            self._send(503, {"type": "error", "error": {"type": "overloaded_error",
                                                        "message": "service unavailable"}})
            return
        if delay:
            state.stopped.wait(delay)  # a stopped server ends its slow answers too
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


    def _hostile(self, mode: str, delay: float, body: Any) -> None:
        """Answers that never end (their prompt counts as paid for), or that point elsewhere."""
        state = self.server.state
        if mode == "redirect":
            self.send_response(307)
            self.send_header("Location", state.target + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        messages = body.get("messages") if isinstance(body, dict) else None
        with state.lock:
            state.seen.append(str(messages[-1]["content"]) if messages else "")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if mode == "trickle":  # a body announced whole, one byte at a time
            self.send_header("Content-Length", str(10**6))
            self.end_headers()
            while not state.stopped.wait(delay or 0.5):
                self.wfile.write(b" ")
                self.wfile.flush()
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = b"%x\r\n%s\r\n" % (64 * 1024, b"[" * 64 * 1024)
        if state.stopped.wait(delay):
            return
        while not state.stopped.is_set():  # until the client hangs up (BrokenPipe) or we stop
            self.wfile.write(chunk)


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
        self.state.stopped.set()
        self.shutdown()
        self.server_close()

    def __enter__(self) -> StubServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_mode(self, mode: str, delay: float = 0.0, target: str = "") -> None:
        with self.state.lock:
            self.state.mode, self.state.delay, self.state.target = mode, delay, target

    def requests(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return list(self.state.requests)

    def seen(self) -> Counter[str]:
        with self.state.lock:
            return Counter(self.state.seen)


def main() -> None:
    server = StubServer(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    print(server.url, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

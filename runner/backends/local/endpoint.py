"""One POST to a model's HTTP endpoint, bounded: one deadline for connect, headers and the whole
body, a cap on the answer's bytes, no redirects (the key and the prompts go to base_url's origin
and nowhere else), retries of what is safe to retry, and a stop that ends it mid-request. Knows
nothing of rows, answers or jobs."""

from __future__ import annotations

import contextlib
import json
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from runner.redact import masked_url, redact, secret_values
from runner.rpc import Code
from runner.spec import ExecutorSpec

if TYPE_CHECKING:
    import requests

# Retried inside the job, then the job fails: the endpoint's trouble, not the row's.
RETRIED_STATUS = frozenset({408, 409, 425, 429})
RETRY_CAP_SECONDS = 30.0
CHUNK_BYTES = 64 * 1024
# A host that takes longer than this to accept a connection is down: nothing was sent, so it is
# retried; the cap also bounds how long a cancel waits on a connect, the one wait not watched.
CONNECT_SECONDS = 10.0
WATCH_SECONDS = 0.1  # how often the watchdog looks at deadlines and the stop


class EndpointError(Exception):
    """The endpoint failed in a way that is not about the row: the job fails at job level, with
    this google.rpc code and message, and the rows it did not answer are to do again."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = int(code)
        self.message = message


class Stopped(Exception):
    """The job was asked to stop while this request was in flight: no answer, the row is to do
    again, and no one's fault."""


@dataclass(frozen=True, slots=True)
class Answer:
    """What the endpoint answered, read whole (within the cap) before the connection is let go."""

    status: int
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def phrase(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


def rpc_code(status: int) -> int:
    """HTTP status -> the google.rpc code a job error carries."""
    return {400: Code.PERMISSION_DENIED, 401: Code.UNAUTHENTICATED,
            402: Code.PERMISSION_DENIED, 403: Code.PERMISSION_DENIED, 404: Code.NOT_FOUND,
            408: Code.DEADLINE_EXCEEDED, 429: Code.RESOURCE_EXHAUSTED}.get(status,
                                                                           Code.UNAVAILABLE)


def size_text(count: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size and count % size == 0:
            return f"{count // size} {unit}"
    return f"{count:,} bytes"


# --- requests in flight, and the watchdog that ends them ------------------------------------------

@dataclass(eq=False)
class _Flight:
    deadline: float
    sock: socket.socket | None = None
    why: str | None = None  # "deadline" or "stop", once cut
    done: bool = False  # its socket may serve the thread's next request: never cut it then
    lock: threading.Lock = field(default_factory=threading.Lock)

    def attach(self, sock: socket.socket) -> None:
        with self.lock:
            self.sock = sock
            if self.why is not None:
                _shut(sock)

    def cut(self, why: str) -> None:
        with self.lock:
            if self.why is None and not self.done:
                self.why = why
                if self.sock is not None:
                    _shut(self.sock)

    def close(self) -> None:
        with self.lock:
            self.done, self.sock = True, None


def _shut(sock: socket.socket) -> None:
    """A read blocked on `sock` in another thread returns at once. socket.socket's own shutdown,
    not SSLSocket's, which would drop the TLS state under that thread's feet."""
    with contextlib.suppress(OSError):  # already closed: nothing is waiting on it
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


_current = threading.local()  # the flight of the request this thread is making


class InFlight:
    """The endpoint requests in flight in one worker, each with its deadline and, once sent, its
    socket. A thread of a pool cannot be killed, so a watchdog shuts a request's socket down at
    its deadline, or every one on stop(): the read blocked on it returns at once, whether it waits
    for the headers (a slow model) or inside the body (a trickle)."""

    def __init__(self) -> None:
        self.stopped = threading.Event()
        self._flights: set[_Flight] = set()
        self._lock = threading.Lock()
        self._watchdog: threading.Thread | None = None

    def stop(self) -> None:
        self.stopped.set()
        self._sweep()

    def _sweep(self) -> None:
        now = time.monotonic()
        with self._lock:
            flights = list(self._flights)
        for flight in flights:
            if self.stopped.is_set():
                flight.cut("stop")
            elif now >= flight.deadline:
                flight.cut("deadline")

    def _watch(self) -> None:
        while not self.stopped.wait(WATCH_SECONDS):
            self._sweep()

    def begin(self, seconds: float) -> _Flight:
        flight = _Flight(time.monotonic() + seconds)
        with self._lock:
            self._flights.add(flight)
            if self._watchdog is None:
                self._watchdog = threading.Thread(target=self._watch, daemon=True,
                                                  name="endpoint-watchdog")
                self._watchdog.start()
        if self.stopped.is_set():  # stopped as it began: the watchdog's last sweep missed it
            flight.cut("stop")
        _current.flight = flight
        return flight

    def end(self, flight: _Flight) -> None:
        _current.flight = None
        flight.close()
        with self._lock:
            self._flights.discard(flight)


def session() -> requests.Session:
    """A requests session whose connections hand their socket to the request's flight once the
    request is sent, so the watchdog can cut the wait for the answer. Made on first use: the
    HTTP stack is not imported by workers that send nothing."""
    import requests
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
    from urllib3.poolmanager import ProxyManager
    from urllib3.response import HTTPResponse

    def watched(conn: HTTPConnection) -> None:
        flight = getattr(_current, "flight", None)
        if flight is not None and conn.sock is not None:
            flight.attach(conn.sock)

    # urllib3's own getresponse narrows http.client's return type already: mypy says so twice.
    class Watched(HTTPConnection):
        def getresponse(self) -> HTTPResponse:  # type: ignore[override]
            watched(self)
            return super().getresponse()

    class WatchedTLS(HTTPSConnection):
        def getresponse(self) -> HTTPResponse:  # type: ignore[override]
            watched(self)
            return super().getresponse()

    class Pool(HTTPConnectionPool):
        ConnectionCls = Watched

    class TLSPool(HTTPSConnectionPool):
        ConnectionCls = WatchedTLS

    class Adapter(requests.adapters.HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": Pool, "https": TLSPool}

        def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
            manager = super().proxy_manager_for(proxy, **kwargs)
            if type(manager) is ProxyManager:  # HTTP(S)_PROXY; a SOCKS proxy keeps its own pools
                manager.pool_classes_by_scheme = {"http": Pool, "https": TLSPool}
            return manager

    out = requests.Session()
    out.mount("http://", Adapter())
    out.mount("https://", Adapter())
    return out


# --- one POST ---------------------------------------------------------------------------------------

def _timed_out(spec: ExecutorSpec) -> EndpointError:
    # DEADLINE_EXCEEDED blocks the manifest at once (streak._at_once): the endpoint may still
    # answer, and bill, a request given up on, so it is never sent again without the user.
    return EndpointError(Code.DEADLINE_EXCEEDED, "endpoint timed out: no complete answer within "
                         f"{spec.timeout:g} s; it may still have answered and billed the request, "
                         "so it is not sent again until you raise the executor's timeout and run "
                         "`batchrun retry`")


def _too_long(spec: ExecutorSpec) -> EndpointError:
    # OUT_OF_RANGE blocks at once too, for the same reason: the endpoint took the request and
    # answered it (billed, most likely) with more than any chat answer or embedding needs; sent
    # again, it is paid again for the same endless body. Not the row's refusal: nothing the model
    # said about the row is known, so no attempt of the row is used.
    return EndpointError(Code.OUT_OF_RANGE, f"the endpoint sent more than "
                         f"{size_text(spec.max_response_bytes)} for one request "
                         "(max_response_bytes), more than any answer needs: it may have billed "
                         "the request, so it is not sent again until you fix the endpoint (or "
                         "raise the executor's max_response_bytes) and run `batchrun retry`")


def _redirect(status: int, url: str, location: str | None) -> EndpointError:
    where = masked_url(urljoin(url, location)) if location else "nowhere (no Location)"
    return EndpointError(Code.NOT_FOUND, f"{phrase(status)}: the endpoint redirected to {where}; "
                         "batchrun does not follow redirects (the key and the prompts would go "
                         "there): set base_url to the endpoint itself")


def _read(resp: requests.Response, spec: ExecutorSpec, flight: _Flight) -> bytes:
    """The body, whole, or EndpointError past max_response_bytes (before reading, when the
    endpoint announces as much)."""
    cap = spec.max_response_bytes
    announced = resp.headers.get("Content-Length", "")
    if announced.isdigit() and int(announced) > cap:
        raise _too_long(spec)
    body = bytearray()
    for chunk in resp.iter_content(CHUNK_BYTES):  # decoded: a compressed bomb counts in full
        body += chunk
        if len(body) > cap:
            raise _too_long(spec)
        if time.monotonic() >= flight.deadline:  # where no watchdog sees the socket (SOCKS)
            flight.cut("deadline")
            raise ConnectionError("past the deadline")
    return bytes(body)


def _gap_timeout(exc: BaseException) -> bool:
    """Whether a failed request waited too long for the next bytes of the answer (not for a
    connection: a connect that timed out sent nothing and is tried again)."""
    import requests
    from urllib3.exceptions import ReadTimeoutError

    if isinstance(exc, requests.ConnectTimeout):
        return False
    seen: list[BaseException] = []
    todo: list[object] = [exc]
    while todo and len(seen) < 16:
        item = todo.pop()
        if isinstance(item, (ReadTimeoutError, TimeoutError)):
            return True
        if isinstance(item, BaseException) and item not in seen:
            seen.append(item)
            todo += [*item.args[:1], item.__cause__, item.__context__]
    return False


def _once(session: requests.Session, url: str, body: dict[str, Any], headers: dict[str, str],
          spec: ExecutorSpec, flights: InFlight) -> Answer:
    """One try: connect, send, wait for the headers and read the body within spec.timeout, or
    EndpointError, Stopped, or the requests exception of a connection that failed."""
    import requests

    flight = flights.begin(spec.timeout)
    try:
        # The socket timeouts bound each wait on its own (the connect; any gap between reads);
        # the watchdog bounds the whole request once it is sent.
        with session.post(url, json=body, headers=headers, stream=True, allow_redirects=False,
                          timeout=(min(CONNECT_SECONDS, spec.timeout), spec.timeout)) as resp:
            if 300 <= resp.status_code < 400:
                raise _redirect(resp.status_code, url, resp.headers.get("Location"))
            answer = Answer(resp.status_code, _read(resp, spec, flight))
            # A body with a length or chunks that was cut short raised; one read to the end of
            # the connection did not, so if it was cut as it ended what was read may be short.
            framed = "Content-Length" in resp.headers or "chunked" in resp.headers.get(
                "Transfer-Encoding", "").lower()
        if flight.why is None or framed:
            return answer
        raise ConnectionError("cut")
    except (requests.RequestException, OSError, ValueError) as exc:
        if flight.why == "stop":
            raise Stopped from None
        if flight.why == "deadline" or _gap_timeout(exc):
            raise _timed_out(spec) from None
        raise
    finally:
        flights.end(flight)


def post(session: requests.Session, url: str, body: dict[str, Any], headers: dict[str, str],
         spec: ExecutorSpec, flights: InFlight) -> Answer:
    """POST one request. 429, 408, 5xx and refused connections are tried again with jittered
    exponential backoff (spec.retries times), then raise EndpointError, as do 401/402/403 (the key
    or the account), 404 (wrong URL or model), a redirect, an answer past max_response_bytes and a
    timeout at once: a request the endpoint may still be answering is never sent again here, since
    it may be billed. Any other answer is the row's."""
    import requests

    secrets = secret_values([spec.api_key_env])
    for attempt in range(spec.retries + 1):
        if flights.stopped.is_set():
            raise Stopped
        last_try = attempt == spec.retries
        try:
            answer = _once(session, url, body, headers, spec, flights)
        except requests.exceptions.InvalidHeader:
            raise EndpointError(Code.UNAUTHENTICATED, f"the key in {spec.api_key_env} is not a "
                                "valid header value (a trailing newline or space?): fix it, then "
                                "run `batchrun retry`") from None
        except requests.RequestException as exc:
            if last_try:
                raise EndpointError(Code.UNAVAILABLE, redact(
                    f"endpoint unreachable: {type(exc).__name__}: {exc} (after {attempt + 1} "
                    "tries)", secrets)) from None
        else:
            status = answer.status
            message = error_of(answer, spec)["message"] if status >= 400 else ""
            if status in (401, 402, 403) or "credit balance is too low" in message:
                env = spec.api_key_env
                what = ("the account was refused (billing)" if status in {400, 402}
                        else f"credentials rejected — check api_key_env ({env or 'not set'})")
                raise EndpointError(rpc_code(status), f"{phrase(status)}: {what}: {message}")
            if status == 404:
                raise EndpointError(Code.NOT_FOUND, f"{phrase(status)}: {masked_url(url)} — check "
                                    f"base_url and the model name: {message}")
            if not (status in RETRIED_STATUS or status >= 500):
                return answer
            if last_try:
                raise EndpointError(rpc_code(status), f"{phrase(status)}: {message} (after "
                                    f"{attempt + 1} tries)")
        delay = min(RETRY_CAP_SECONDS, spec.retry_delay * 2 ** attempt)
        if flights.stopped.wait(random.uniform(delay / 2, delay)):
            raise Stopped
    raise AssertionError("the last try returns or raises")


def error_of(answer: Answer, spec: ExecutorSpec) -> dict[str, Any]:
    try:
        payload = json.loads(answer.body)
    except ValueError:
        payload = answer.text[:500]
    message = payload.get("error", payload) if isinstance(payload, dict) else payload
    if isinstance(message, dict):
        message = message.get("message", str(message))
    # An endpoint may echo the request, key included: never let it reach a result row.
    return {"code": answer.status,
            "message": redact(str(message), secret_values([spec.api_key_env]))}

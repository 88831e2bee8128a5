"""Vertex AI REST for batch prediction jobs: create, get, list (label filter, paged), cancel, delete.

requests + google-auth ADC (cloud-platform scope); anonymous when pointed at an emulator. Retries
429/500/503 and dropped connections with bounded exponential backoff and jitter, except create,
which is never retried blindly: the caller re-lists by labels first.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

from runner.backends.vertex.jobs import disabled_service, rpc_error_text
from runner.errors import BackendError, Diagnostic, QuotaError, error

RETRIED: Final = frozenset({429, 500, 502, 503, 504})
SCOPE: Final = "https://www.googleapis.com/auth/cloud-platform"


class VertexError(BackendError):
    def __init__(self, message: str | list[Diagnostic], status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _disabled(project: str, service: str, url: str | None) -> VertexError:
    name = "Vertex AI API" if service == "aiplatform.googleapis.com" else "API"
    return VertexError([error(
        f"the {name} ({service}) is not enabled in project {project}",
        hint=f"gcloud services enable {service} --project {project}"
             + (f" (or enable it at {url})" if url else "")
             + "; it takes a minute or two to reach every region")], 403)


class TransientCreateError(VertexError):
    """Create failed in a way that leaves it unknown whether the job exists."""


class QuotaExceeded(QuotaError):
    """429 on create: no job was made; the rows wait for the next apply."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    base: float = 0.5
    cap: float = 16.0
    timeout: float = 60.0

    def delay(self, attempt: int) -> float:
        return float(random.uniform(0, min(self.cap, self.base * 2 ** attempt)))


def host_for(region: str) -> str:
    """The region's host: `global` (Gemini's batch runs there; Claude's and open models' never)
    has no region in its name; the multi-regions us and eu have their own (GENAI _api_client)."""
    if region == "global":
        return "https://aiplatform.googleapis.com"
    if region in ("us", "eu"):
        return f"https://aiplatform.{region}.rep.googleapis.com"
    return f"https://{region}-aiplatform.googleapis.com"


def _session(endpoint: str | None) -> Any:
    import requests

    if endpoint:
        return requests.Session()  # an emulator: no credentials, none sent
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    credentials, _ = google.auth.default(scopes=[SCOPE])
    return AuthorizedSession(credentials)


class VertexClient:
    def __init__(self, *, project: str, region: str, endpoint: str | None = None,
                 retry: RetryPolicy | None = None, session: Any = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.base = (endpoint or host_for(region)).rstrip("/")
        self.parent = f"projects/{project}/locations/{region}"
        self.retry = retry or RetryPolicy()
        self.session = session if session is not None else _session(endpoint)
        self.sleep = sleep

    def _call(self, method: str, path: str, *, body: Any = None, params: Mapping[str, str] | None = None,
              retry: bool = True) -> Any:
        import requests

        url = f"{self.base}/v1/{path}"
        last = ""
        for attempt in range(self.retry.attempts if retry else 1):
            try:
                resp = self.session.request(method, url, json=body, params=params,
                                            timeout=self.retry.timeout)
            except requests.RequestException as exc:
                last = f"connection to Vertex AI failed: {type(exc).__name__}"
                if not retry:
                    raise TransientCreateError(last) from None
                self.sleep(self.retry.delay(attempt))
                continue
            if resp.status_code < 400:
                try:
                    return resp.json() if resp.content else {}
                except ValueError:
                    last = f"Vertex AI answered {resp.status_code} with a body that is not JSON"
                    if not retry:
                        raise TransientCreateError(last) from None
                    self.sleep(self.retry.delay(attempt))
                    continue
            try:
                payload = resp.json()
            except ValueError:
                payload = None
            last = rpc_error_text(resp.status_code, payload, resp.text)
            disabled = disabled_service(payload) if resp.status_code == 403 else None
            if disabled is not None:
                raise _disabled(self.parent.split("/")[1], *disabled)
            if resp.status_code == 429 and not retry:
                raise QuotaExceeded(f"Vertex AI refused the job: {last}")
            if resp.status_code in RETRIED:
                if not retry:
                    raise TransientCreateError(f"Vertex AI: {last}", resp.status_code)
                self.sleep(self.retry.delay(attempt))
                continue
            raise VertexError(f"Vertex AI: {last}", resp.status_code)
        raise VertexError(f"Vertex AI: {last} (gave up after {self.retry.attempts} tries)")

    def create(self, job: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"{self.parent}/batchPredictionJobs", body=job,
                                            retry=False)
        return result

    def count_tokens(self, model_id: str, request: Mapping[str, Any]) -> int:
        """Claude's count-tokens endpoint: the exact input tokens of one Messages request."""
        body = {k: v for k, v in request.items() if k in ("messages", "system", "tools")}
        body["model"] = model_id
        path = f"{self.parent}/publishers/anthropic/models/count-tokens:rawPredict"
        result = self._call("POST", path, body=body)
        return int(result.get("input_tokens") or 0)

    def get(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", name)
        return result

    def list(self, filter_: str, page_size: int = 100) -> Iterator[dict[str, Any]]:
        token = ""
        while True:
            params = {"filter": filter_, "pageSize": str(page_size)}
            if token:
                params["pageToken"] = token
            page = self._call("GET", f"{self.parent}/batchPredictionJobs", params=params)
            yield from page.get("batchPredictionJobs") or []
            token = page.get("nextPageToken") or ""
            if not token:
                return

    def cancel(self, name: str) -> None:
        """Ask for a cancel. A job that already ended answers 400 FAILED_PRECONDITION: nothing is
        left to cancel, so that is success (its output is collected like any ended job's)."""
        try:
            self._call("POST", f"{quote(name, safe='/')}:cancel", body={})
        except VertexError as exc:
            if exc.status == 400 and "FAILED_PRECONDITION" in str(exc):
                return
            raise

    def delete(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("DELETE", name)
        return result

"""Keeps credentials out of everything batchrun prints or stores: access tokens, API keys, Basic
auth, passwords in URLs, credential-looking query parameters, key-file contents, and the values of
the environment variables named as API keys (of any length) and of every query parameter of an
endpoint's base_url. Pure, but for the process-wide list of secret values `remember` adds to, so
no caller has to know which keys are in play."""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterable
from typing import Final
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit, urlunsplit

# Query parameter names that carry credentials: ?token=, &client_secret=, &sig=, &api-key=...
_CREDENTIAL_NAME: Final = (r"[a-z0-9_.-]*(?:token|key|secret|password|passwd|pwd|credential|auth)"
                           r"[a-z0-9_.-]*|sig|signature|code")
_PATTERNS: Final = (
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"(?i)(basic\s+)[A-Za-z0-9+/=]{4,}"),
    re.compile(r"ya29\.[0-9A-Za-z_-]+"),  # Google OAuth access tokens
    re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"),  # OpenAI/Anthropic-style keys
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
    re.compile(r'(?i)("private_key"\s*:\s*")[^"]*'),
    re.compile(r"(?i)((?:api[_-]?key|x-api-key|access[_-]?token|key)[\"']?\s*[:=]\s*[\"']?)"
               r"(?=[A-Za-z._~+/-]*\d)[A-Za-z0-9._~+/-]{8,}"),
    # user:password@ in any URL
    re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]*(?=@)"),
    re.compile(rf"(?i)([?&;](?:{_CREDENTIAL_NAME})=)[^&#\s\"']+"),
)
MASK: Final = "[REDACTED]"
# Shorter "keys" (a test's "k") would mask every such letter of every message and protect nothing.
MIN_SECRET_CHARS: Final = 3
_remembered: set[str] = set()


def secret_values(names: Iterable[str | None]) -> list[str]:
    """The values of the named environment variables that hold keys, short ones included."""
    return [v for n in names if n and (v := os.environ.get(n)) and len(v) >= MIN_SECRET_CHARS]


def _spellings(value: str) -> set[str]:
    """A secret as an endpoint may echo it back: raw, trimmed, URL-encoded, JSON-escaped, base64
    and hex."""
    out = {value, value.strip()}
    for v in list(out):
        out |= {quote(v, safe=""), quote_plus(v), json.dumps(v)[1:-1],
                base64.b64encode(v.encode()).decode().rstrip("="), v.encode().hex()}
    return {v for v in out if len(v) >= MIN_SECRET_CHARS}


def remember(values: Iterable[str | None]) -> None:
    """Secret values every later redact() masks, in this process, in every spelling."""
    for value in values:
        if value and len(value.strip()) >= MIN_SECRET_CHARS:
            _remembered.update(_spellings(value))


def url_secrets(url: str | None) -> list[str]:
    """What a URL may carry that is nobody's business: the password inside it, the Basic auth
    credentials an HTTP client builds from it, and the value of every query parameter, whatever
    its name (?session=, ?jwt=, ?pass=: no list of names is ever complete)."""
    if not url:
        return []
    parts = urlsplit(url)
    found = [v for _, v in parse_qsl(parts.query) if v]
    found += [value for _, value in _params(parts.query) if value]  # as written, %-escapes and all
    if parts.password:
        user_pass = f"{unquote(parts.username or '')}:{unquote(parts.password)}"
        found += [parts.password, unquote(parts.password),
                  base64.b64encode(user_pass.encode()).decode()]
    return found


def _params(query: str) -> list[tuple[str, str]]:
    """A query's (name, value) pairs as written: nothing decoded, nothing dropped."""
    return [(name, value) for name, _, value in (part.partition("=")
                                                 for part in re.split("[&;]", query) if part)]


def masked_url(url: str | None) -> str | None:
    """The URL as it may be shown or stored: no user name or password, every query value masked
    (`?session=[REDACTED]&jwt=[REDACTED]`), the names kept so the user knows which URL it is."""
    if not url:
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.username is not None or parts.password is not None:
        netloc = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    query = "&".join(f"{name}={MASK}" if value else name for name, value in _params(parts.query))
    return redact(urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment)))


_ANY: Final = re.compile("|".join(f"(?:{p.pattern.replace('(?i)', '')})" for p in _PATTERNS),
                         re.I | re.S)


def might_hold_secret(text: str) -> bool:
    """A quick look, for hot paths (every answer): False means redact() would change nothing."""
    return bool(_ANY.search(text)) or any(v in text for v in _remembered)


def redact_value(value: object) -> object:
    """redact() through the strings of a JSON value (an answer: text, parsed JSON, tool calls)."""
    if isinstance(value, str):
        return redact(value) if might_hold_secret(value) else value
    if isinstance(value, list):
        return [redact_value(v) for v in value]
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    return value


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    extra = {spelling for value in secrets for spelling in _spellings(value)}
    for value in sorted(extra | _remembered, key=len, reverse=True):
        text = text.replace(value, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + MASK, text)
    return text

"""Keeps credentials out of everything batchrun prints or stores: access tokens, API keys, key-file
contents, and the values of the environment variables named as API keys. Pure."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Final

_PATTERNS: Final = (
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"ya29\.[0-9A-Za-z_-]+"),  # Google OAuth access tokens
    re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"),  # OpenAI/Anthropic-style keys
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
    re.compile(r'(?i)("private_key"\s*:\s*")[^"]*'),
    re.compile(r"(?i)((?:api[_-]?key|x-api-key|access[_-]?token|key)[\"']?\s*[:=]\s*[\"']?)"
               r"[A-Za-z0-9._~+/-]{8,}"),
)
MASK: Final = "[REDACTED]"


def secret_values(names: Iterable[str | None]) -> list[str]:
    """The values of the named environment variables that hold keys (long enough to matter)."""
    return [v for n in names if n and (v := os.environ.get(n)) and len(v) >= 6]


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    for value in secrets:
        text = text.replace(value, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + MASK, text)
    return text

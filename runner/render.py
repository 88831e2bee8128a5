"""Rendering, pure and streaming: source rows -> Vertex request rows, byte-for-byte in the seed formats.

Templates run in Jinja2's sandbox with StrictUndefined. Never reads files or imports a backend.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import jinja2
import jinja2.meta
from jinja2.sandbox import SandboxedEnvironment

from runner import estimate
from runner.errors import Diagnostic, RenderError, error
from runner.identity import request_hash
from runner.spec import Family, Manifest, Template

ANTHROPIC_VERSION: Final = "vertex-2023-10-16"
MAX_REPORTED: Final = 20  # row problems listed before "... and N more"
ROW_NAME: Final = "row"  # every template may also read the whole row as `row`


@dataclass(frozen=True, slots=True)
class SourceRow:
    number: int  # 1-based line (JSONL) or record (CSV) number, for error messages
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class RenderedRow:
    custom_id: str
    line: bytes  # the request row as sent, without the newline
    request_hash: str
    row: SourceRow
    prompt_chars: int = 0  # characters of text the model reads, for the token estimate


def _environment() -> SandboxedEnvironment:
    return SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)


def template_variables(template: Template) -> set[str]:
    """Top-level names a template reads (raises jinja2.TemplateSyntaxError)."""
    env = _environment()
    return set(jinja2.meta.find_undeclared_variables(env.parse(template.text))) - {ROW_NAME}


def dumps(value: Any) -> bytes:
    """JSON exactly as the seed rows are written: ", " and ": " separators, UTF-8, no escapes."""
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


class RowError(Exception):
    """A single bad row; collected into one RenderError per manifest."""


class Renderer:
    """Compiled templates of one manifest; turns one row into one request line."""

    def __init__(self, manifest: Manifest, *, max_request_bytes: int,
                 max_id_chars: int = 64) -> None:
        self.manifest = manifest
        self.max_request_bytes = max_request_bytes
        self.max_id_chars = max_id_chars
        env = _environment()
        prompt = manifest.prompt

        def compile_(t: Template | None) -> jinja2.Template | None:
            return None if t is None else env.from_string(t.text)

        self._system = compile_(prompt.system)
        self._user = compile_(prompt.user)
        self._input = compile_(prompt.input)
        self._examples = [(env.from_string(u.text), env.from_string(a.text))
                          for u, a in prompt.examples]
        self._params = dict(manifest.parameters)
        self._requests = manifest.source.format == "requests"

    def custom_id(self, row: SourceRow) -> str:
        column = self.manifest.source.id_column
        if column not in row.data:
            raise RowError(f'has no id column "{column}"')
        value = row.data[column]
        if value is None or value == "":
            raise RowError(f'id column "{column}" is empty')
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise RowError(f'id column "{column}" must be a string or a whole number, '
                           f"not {type(value).__name__}")
        text = str(value)
        if len(text) > self.max_id_chars:
            raise RowError(f"id is {len(text)} characters, over the limit of {self.max_id_chars} "
                           "(quota.max_id_chars)")
        return text

    def _messages(self, context: Mapping[str, Any]) -> list[dict[str, str]]:
        messages = []
        for user, assistant in self._examples:
            messages.append({"role": "user", "content": user.render(context)})
            messages.append({"role": "assistant", "content": assistant.render(context)})
        if self._user is not None:
            messages.append({"role": "user", "content": self._user.render(context)})
        return messages

    def request(self, custom_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
        """The request row as a dict, keys in the seed order."""
        context = {**data, ROW_NAME: data}
        family = self.manifest.family
        if family is Family.CLAUDE:
            request: dict[str, Any] = {
                "messages": self._messages(context),
                "anthropic_version": ANTHROPIC_VERSION,
            }
            request["max_tokens"] = self._params.get("max_tokens")
            if self._system is not None:
                request["system"] = self._system.render(context)
            request.update((k, v) for k, v in self._params.items() if k != "max_tokens")
            return {"custom_id": custom_id, "request": request}
        if family is Family.OPENAI_CHAT:
            messages = self._messages(context)
            if self._system is not None:
                messages.insert(0, {"role": "system", "content": self._system.render(context)})
            body = {"model": self.manifest.model.short, "messages": messages, **self._params}
            return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
                    "body": body}
        assert self._input is not None  # manifest validation guarantees an input template
        body = {"model": self.manifest.model.short, "input": self._input.render(context),
                **self._params}
        return {"custom_id": custom_id, "method": "POST", "url": "/v1/embeddings", "body": body}

    def render(self, row: SourceRow) -> RenderedRow:
        custom_id = self.custom_id(row)
        if self._requests:
            request: Mapping[str, Any] = row.data
            line = dumps(row.data)
        else:
            try:
                request = self.request(custom_id, row.data)
                line = dumps(request)
            except jinja2.UndefinedError as exc:
                raise RowError(f"template needs a value the row lacks: {exc.message}") from exc
            except jinja2.TemplateError as exc:
                raise RowError(f"template failed: {exc}") from exc
        if len(line) > self.max_request_bytes:
            raise RowError(f"request is {len(line):,} bytes, over the limit of "
                           f"{self.max_request_bytes:,} (quota.max_request_bytes)")
        return RenderedRow(custom_id, line, request_hash(line), row,
                           estimate.prompt_chars(self.manifest.family, request))


def row_problem(file: str, row: SourceRow | int, message: str, custom_id: str | None) -> Diagnostic:
    number = row.number if isinstance(row, SourceRow) else row
    who = f"row {number}" + (f" (id {custom_id!r})" if custom_id is not None else "")
    return error(f"{who}: {message}", file=file, line=number,
                 hint="fix the source row, or filter it out of the source")


class _IdTracker:
    """Remembers every id once, to name the first row of a duplicate."""

    def __init__(self) -> None:
        self._first: dict[str, int] = {}

    def add(self, custom_id: str, number: int) -> int | None:
        first = self._first.setdefault(custom_id, number)
        return None if first == number else first


class RowIssue(Exception):
    """Raised by a row source for a row it cannot decode (non-UTF-8, bad JSON, bad CSV)."""

    def __init__(self, number: int, message: str) -> None:
        super().__init__(message)
        self.number = number
        self.message = message


def render_rows(
    manifest: Manifest,
    rows: Iterable[SourceRow | RowIssue],
    *,
    max_request_bytes: int,
    source_name: str,
    max_id_chars: int = 64,
) -> Iterator[RenderedRow]:
    """Render every row, streaming; bad rows are collected and raised together at the end."""
    renderer = Renderer(manifest, max_request_bytes=max_request_bytes, max_id_chars=max_id_chars)
    ids = _IdTracker()
    problems: list[Diagnostic] = []
    bad = 0
    for item in rows:
        if isinstance(item, RowIssue):
            bad += 1
            if len(problems) < MAX_REPORTED:
                problems.append(row_problem(source_name, item.number, item.message, None))
            continue
        custom_id: str | None = None
        try:
            custom_id = renderer.custom_id(item)
            first = ids.add(custom_id, item.number)
            if first is not None:
                raise RowError(f"duplicate id, first seen at row {first}")
            rendered = renderer.render(item)
        except RowError as exc:
            bad += 1
            if len(problems) < MAX_REPORTED:
                problems.append(row_problem(source_name, item, str(exc), custom_id))
            continue
        if not problems:
            yield rendered
    if problems:
        if bad > len(problems):
            problems.append(error(f"... and {bad - len(problems)} more bad rows in {source_name}"))
        raise RenderError(problems)

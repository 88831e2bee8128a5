"""The list filter of batchPredictionJobs (AIP-160 subset, reference §4.2): display_name, state,
model_display_name, create_time, labels.KEY; AND, OR (binds tighter), NOT/-, parentheses. Pure."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from typing import Any

Job = Mapping[str, Any]
Predicate = Callable[[Job], bool]

_TOKEN = re.compile(r'\s*(?:(\()|(\))|("(?:[^"\\]|\\.)*")|(!=|<=|>=|=|<|>|:)|([^\s()=!<>:"]+))')
_FIELDS = {"display_name": "displayName", "model_display_name": "modelDisplayName",
           "state": "state", "create_time": "createTime"}


class FilterError(ValueError):
    pass


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise FilterError(f"cannot parse filter near {text[pos:pos + 20]!r}")
        out.append(next(g for g in m.groups() if g is not None))
        pos = m.end()
    return out


def _unquote(value: str) -> str:
    if value.startswith('"') and value.endswith('"'):
        return value[1:-1].replace('\\"', '"')
    return value


def _comparison(field: str, op: str, raw: str) -> Predicate:
    value = _unquote(raw)
    if field.startswith("labels."):
        key = field[len("labels."):]
        if op == ":":
            return (lambda j: key in (j.get("labels") or {})) if value == "*" else (
                lambda j: fnmatch.fnmatchcase((j.get("labels") or {}).get(key, ""), value))
        if op in ("=", "!="):
            want = op == "="
            return lambda j: ((j.get("labels") or {}).get(key) == value) is want
        raise FilterError(f"operator {op} is not supported for labels")
    if field not in _FIELDS:
        raise FilterError(f'unsupported filter field "{field}"')
    attr = _FIELDS[field]

    def get(j: Job) -> str:
        return str(j.get(attr, ""))

    if op == "=":
        return lambda j: get(j) == value
    if op == "!=":
        return lambda j: get(j) != value
    if op == ":" and field == "display_name":
        return lambda j: fnmatch.fnmatchcase(get(j), value)
    if field == "create_time" and op in ("<", "<=", ">", ">="):
        checks: dict[str, Callable[[str, str], bool]] = {
            "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
            ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}
        return lambda j: checks[op](get(j), value)
    raise FilterError(f"operator {op} is not supported for {field}")


class _Parser:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.i = 0

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise FilterError("filter ends too early")
        self.i += 1
        return token

    def expression(self) -> Predicate:  # sequence {AND sequence}
        parts = [self.factor()]
        while self.peek() is not None and self.peek() != ")":
            if self.peek() == "AND":
                self.take()
            parts.append(self.factor())
        return lambda j: all(p(j) for p in parts)

    def factor(self) -> Predicate:  # term {OR term}
        parts = [self.term()]
        while self.peek() == "OR":
            self.take()
            parts.append(self.term())
        return lambda j: any(p(j) for p in parts)

    def term(self) -> Predicate:
        token = self.peek()
        if token in ("NOT", "-"):
            self.take()
            inner = self.term()
            return lambda j: not inner(j)
        if token == "(":
            self.take()
            inner = self.expression()
            if self.take() != ")":
                raise FilterError("missing )")
            return inner
        field = self.take()
        negate = field.startswith("-")
        field = field.lstrip("-")
        op = self.take()
        if op not in ("=", "!=", ":", "<", "<=", ">", ">="):
            raise FilterError(f"expected an operator after {field}")
        predicate = _comparison(field, op, self.take())
        return (lambda j: not predicate(j)) if negate else predicate


def compile_filter(text: str) -> Predicate:
    if not text.strip():
        return lambda j: True
    parser = _Parser(_tokens(text))
    predicate = parser.expression()
    if parser.peek() is not None:
        raise FilterError(f"unexpected {parser.peek()!r} in filter")
    return predicate

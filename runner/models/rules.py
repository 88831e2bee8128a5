"""Per-model request rules: the parameters a model refuses, the pairs it refuses together and the
values it refuses, read from the catalogue's request_rules. Pure; says nothing of where a parameter
came from or how a problem is shown."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Final

from runner.models import catalog
from runner.spec import ModelRef

# "claude-opus-4-7", "claude-sonnet-5", and the older "claude-3-7-sonnet", "claude-3-5-sonnet-v2"
_NEW: Final = re.compile(r"^claude-(?P<line>[a-z]+)-(?P<major>\d+)(?:-(?P<minor>\d+))?$")
_OLD: Final = re.compile(r"^claude-(?P<major>\d+)-(?P<minor>\d+)-(?P<line>[a-z]+)(?:-v\d+)?$")


@dataclass(frozen=True, slots=True)
class Refusal:
    """One parameter a model would answer 400 to, and what to tell the person."""

    parameter: str  # the top-level key of parameters the problem is located at
    partners: tuple[str, ...]  # the other keys of a refused combination (empty otherwise)
    message: str  # "claude-opus-4-7 takes no temperature: remove it"
    reason: str  # "the model takes no temperature"
    hint: str  # why, and on what source
    rule: str


def line_version(model: ModelRef) -> tuple[str, tuple[int, int]] | None:
    """("opus", (4, 7)) for anthropic/claude-opus-4-7@…; None for other publishers or names."""
    if model.publisher != "anthropic":
        return None
    name = model.base.split("/", 1)[1]
    match = _NEW.match(name) or _OLD.match(name)
    if match is None:
        return None
    return match["line"], (int(match["major"]), int(match["minor"] or 0))


def _version(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    return int(major), int(minor or 0)


def _applies(rule: Mapping[str, Any], line: str, version: tuple[int, int]) -> bool:
    for span in rule["applies_to"]:
        below = span.get("below")
        if span["line"] == line and _version(span["from"]) <= version and (
                below is None or version < _version(below)):
            return True
    return False


@cache
def _rules_for(base: str) -> tuple[Mapping[str, Any], ...]:
    model = catalog.parse_model(base)
    found = line_version(model) if model else None
    if found is None:
        return ()
    return tuple(r for r in catalog.request_rules() if _applies(r, *found))


def rules_for(model: ModelRef) -> tuple[Mapping[str, Any], ...]:
    """The request rules that apply to `model`, by its line and version."""
    return _rules_for(model.base)


def _hint(rule: Mapping[str, Any]) -> str:
    source = catalog.source_text(rule["sources"][0])
    return f"{rule['why']} ({rule['confidence']}: {source})"


def _value_at(params: Mapping[str, Any], path: str) -> Any:
    node: Any = params
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def refusals(model: ModelRef, params: Mapping[str, Any]) -> list[Refusal]:
    """Every parameter of `params` that `model` refuses, in the order of its rules."""
    name = model.base.split("/", 1)[1]
    out: list[Refusal] = []
    for rule in rules_for(model):
        hint, rid = _hint(rule), rule["id"]
        for key in rule.get("refuses", ()):
            if key in params:
                out.append(Refusal(key, (), f"{name} takes no {key}: {rule['fix']}",
                                   f"the model takes no {key}", hint, rid))
        for pair in rule.get("refuses_together", ()):
            if all(k in params for k in pair):
                said = " or ".join(pair)
                out.append(Refusal(pair[-1], tuple(pair[:-1]),
                                   f"{name} takes {said}, not both: {rule['fix']}",
                                   f"the model takes {said}, not both", hint, rid))
        for path, refused in rule.get("refuses_values", {}).items():
            value = _value_at(params, path)
            if isinstance(value, str) and value in refused:
                said = path.replace(".", " ", 1)
                out.append(Refusal(path.split(".", 1)[0], (),
                                   f'{name} refuses {said} "{value}": {rule["fix"]}',
                                   f'the model refuses {said} "{value}"', hint, rid))
    return out


def accepts(model: ModelRef, key: str) -> bool:
    """Whether `model` takes parameter `key` at all (for what init writes)."""
    return not any(key in r.get("refuses", ()) for r in rules_for(model))


def drop_refused_defaults(model: ModelRef, defaults: Mapping[str, Any],
                          own: Mapping[str, Any]) -> tuple[dict[str, Any], list[Refusal]]:
    """The parameters to send (defaults under the manifest's own) without the defaults `model`
    refuses, and the refusals that dropped them. A manifest's own parameter is never dropped: it is
    the manifest's error to fix."""
    merged = {**defaults, **own}
    dropped: list[Refusal] = []
    for refusal in refusals(model, merged):
        for key in (refusal.parameter, *refusal.partners):
            if key in merged and key in defaults and key not in own:
                del merged[key]
                dropped.append(refusal if key == refusal.parameter else Refusal(
                    key, (), refusal.message, refusal.reason, refusal.hint, refusal.rule))
                break
    return merged, dropped

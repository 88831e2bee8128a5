"""The packaged catalog of batch-capable models, request families and Vertex regions.

Pure; reads one data file inside the package.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any, Final

from runner.spec import Family, ModelRef, Task

_SHORT = re.compile(r"^(?P<publisher>[a-z0-9][a-z0-9-]*)/(?P<model>[A-Za-z0-9][A-Za-z0-9._@-]*)$")
_RESOURCE = re.compile(
    r"^(?:projects/[^/]+/locations/[^/]+/)?publishers/(?P<publisher>[a-z0-9][a-z0-9-]*)"
    r"/models/(?P<model>[A-Za-z0-9][A-Za-z0-9._@-]*)$"
)
_REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")

STATUSES: Final = ("current", "unconfirmed", "deprecated", "retired")
SOURCE_KINDS: Final = ("google", "anthropic", "third-party", "batchrun")
FIRST_PARTY: Final = ("google", "anthropic")  # the only kinds a `confirmed` entry may rest on


@cache
def _data() -> dict[str, Any]:
    text = (resources.files("runner") / "data" / "models.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def parse_model(name: str) -> ModelRef | None:
    """"anthropic/claude-haiku-4-5@20251001" or "publishers/anthropic/models/..." -> ModelRef."""
    match = _SHORT.match(name) or _RESOURCE.match(name)
    if match is None:
        return None
    return ModelRef(match["publisher"], match["model"])


def known_task(model: ModelRef) -> Task | None:
    entry = _data()["models"].get(model.base)
    return Task(entry["task"]) if entry else None


# Google's own models that take Gemini's batch formats; another google/ model (an open model as a
# service, say) takes the OpenAI format as the other open models do.
GEMINI_LINES: Final = ("gemini", "text-embedding", "text-multilingual-embedding")


def family_of(model: ModelRef, task: Task) -> Family:
    if model.publisher == "anthropic":
        return Family.CLAUDE
    if model.publisher == "google" and model.model_id.startswith(GEMINI_LINES):
        return Family.GEMINI_EMBEDDINGS if task is Task.EMBEDDINGS else Family.GEMINI
    return Family.OPENAI_EMBEDDINGS if task is Task.EMBEDDINGS else Family.OPENAI_CHAT


def request_rules() -> list[Mapping[str, Any]]:
    """Per-model request rules (runner.modelrules reads them)."""
    rules: list[Mapping[str, Any]] = _data()["request_rules"]
    return rules


def source_text(source: Mapping[str, Any]) -> str:
    """"Claude Haiku 5.5 … (anthropic, 2026-12-02)": a source as a message names it."""
    kind = source["kind"] if "via" not in source else f"{source['kind']}, via {source['via']}"
    return f"{source.get('title') or source['url']} ({kind}, {source['date']})"


def models_of(task: Task, status: str = "current") -> list[str]:
    """The catalogue's models of `task` with `status`."""
    return sorted(k for k, v in _data()["models"].items()
                  if v["task"] == task.value and v["status"] == status)


def family_rules(family: Family) -> Mapping[str, Any]:
    rules: Mapping[str, Any] = _data()["families"][family.value]
    return rules


def known_models() -> list[str]:
    return sorted(_data()["models"])


def known_regions() -> list[str]:
    return list(_data()["regions"])


def region_well_formed(region: str) -> bool:
    return bool(_REGION.match(region)) or region in MULTI_REGIONS


MULTI_REGIONS: Final = ("us", "eu")


def region_problem(region: str, family: Family | None = None) -> tuple[bool, str, str] | None:
    """(is_error, message, hint) when `region` cannot or may not run batch jobs (for `family`;
    None: for every family, as batchrun.yaml's region is)."""
    if region == "global" and family not in (Family.GEMINI, Family.GEMINI_EMBEDDINGS):
        return (True, 'region "global" does not run batch jobs for Claude or open models '
                      "(Gemini's do: set it in the Gemini manifests' spec.region)",
                "pick a region such as us-east5, or leave it out: the model's region is used")
    if region == "global":
        return None  # base Gemini models batch on the global endpoint (BigQuery aside: checks)
    if not region_well_formed(region):
        return (True, f'"{region}" is not a Vertex region',
                "regions look like us-central1 or europe-west4 (or us, eu: multi-region)")
    if region not in known_regions():
        return (False, f'region "{region}" is not in batchrun\'s list of Vertex regions',
                "check the spelling; new regions work if Vertex knows them")
    return None


def entry(model: ModelRef) -> Mapping[str, Any] | None:
    """The catalogue's record of a model: task, batch regions, status, sources."""
    found: Mapping[str, Any] | None = _data()["models"].get(model.base)
    return found


def regions_open(model: ModelRef) -> bool:
    """Whether the model batches in any region serving it, its listed regions only those seen."""
    found = entry(model)
    return bool(found and found.get("regions_open"))


def batch_regions(model: ModelRef) -> list[str]:
    """Where batch jobs for the model run, the default first; [] when the catalogue does not know."""
    found = entry(model)
    return list(found.get("regions", ())) if found else []


def lifecycle_problem(model: ModelRef) -> tuple[str, str] | None:
    """(message, hint) for a model that is not current: unconfirmed, deprecated or retired. The
    message names the status's source; the hint says where to go, or that nowhere is known."""
    found = entry(model)
    if not found or found.get("status", "current") == "current":
        return None
    instead = found.get("replacement")
    task = Task(found["task"])
    then = _data()["models"].get(instead, {}).get("status") if instead else None
    family = family_of(model, task)
    kin = [m for m in models_of(task) if (ref := parse_model(m)) and family_of(ref, task) is family]
    if then == "current":
        hint = f'move to "{instead}"'
    elif not kin:
        others = models_of(task)
        hint = (f"batchrun knows no current {task} model for batch jobs"
                + (f" in this request family ({family.value}); current in another: "
                   f"{', '.join(others)} (`batchrun models --task {task}`)" if others else
                   f" (`batchrun models --task {task}`)")
                + ": check Vertex's open-model batch page before relying on it")
    else:
        hint = f"pick a current model: `batchrun models --task {task}`"
    if instead and then != "current":
        hint = f'its named replacement "{instead}" is {then or "unknown"} too; ' + hint
    if found["status"] == "retired":
        when = f" on {found['status_since']}" if found.get("status_since") else ""
        return (f'model "{model.short}" was retired{when}: Vertex refuses new jobs for it', hint)
    per = f" (per {source_text(found['sources'][0])})"
    if found["status"] == "unconfirmed":
        note = f": {found['note']}" if found.get("note") else ""
        return f'model "{model.short}" is not confirmed to run batch jobs{note}{per}', hint
    since = f" since {found['status_since']}" if found.get("status_since") else ""
    retires = f"; it retires {found['retires']}" if found.get("retires") else ""
    return f'model "{model.short}" is deprecated{since}{retires}{per}', hint


def _fits(kind: str, value: Any) -> bool:
    is_num = isinstance(value, int | float) and not isinstance(value, bool)
    checks = {
        "positive_int": isinstance(value, int) and not isinstance(value, bool) and value >= 1,
        "int": isinstance(value, int) and not isinstance(value, bool),
        "unit_number": is_num and 0 <= value <= 1,
        "temperature_2": is_num and 0 <= value <= 2,
        "number": is_num,
        "string": isinstance(value, str),
        "bool": isinstance(value, bool),
        "object": isinstance(value, dict),
        "list": isinstance(value, list),
        "string_list": isinstance(value, list) and all(isinstance(v, str) for v in value),
        "string_or_list": isinstance(value, str)
        or (isinstance(value, list) and all(isinstance(v, str) for v in value)),
        "any": True,
    }
    return checks[kind]


_KIND_TEXT = {
    "positive_int": "a whole number of at least 1",
    "int": "a whole number",
    "unit_number": "a number from 0 to 1",
    "temperature_2": "a number from 0 to 2",
    "number": "a number",
    "string": "a string",
    "bool": "true or false",
    "object": "a mapping",
    "list": "a list",
    "string_list": "a list of strings",
    "string_or_list": "a string or a list of strings",
    "any": "anything",
}


def check_parameters(family: Family, params: Mapping[str, Any]) -> list[tuple[str, str, bool]]:
    """Problems as (parameter, message, is_error) for parameters that do not fit the family."""
    rules = family_rules(family)
    allowed: Mapping[str, str] = rules["parameters"]
    out: list[tuple[str, str, bool]] = []
    for key in rules["required"]:
        if key not in params:
            out.append((key, f"{family.value} models need parameters.{key}", True))
    for key, value in params.items():
        kind = allowed.get(key)
        if kind is None:
            alias = rules.get("aliases", {}).get(key)  # another API's name for it
            close = [alias] if alias else difflib.get_close_matches(key, list(allowed), n=1)
            hint = (f'did you mean "{close[0]}"?' if close and close[0] in allowed
                    else f"it is set by {close[0]}" if close
                    else f"known: {', '.join(sorted(allowed))}")
            out.append((key, f'unknown parameter "{key}" for {family.value} models; {hint}', True))
        elif not _fits(kind, value):
            out.append((key, f"parameters.{key} must be {_KIND_TEXT[kind]}", True))
    return out

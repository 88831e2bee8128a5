"""How one row walks the floors, measured: traces `plan` and a collecting `apply` of a two-row local
project and follows one row's id through every call that receives it. A dev tool for the house's
shape (`python -m runner.devtools.walk`); never part of a run.

A walk is the floors of those calls in order, folded into stays (consecutive calls on one floor).
A *climb back up* is a stay on a floor the walk already left for a lower one: the row went down
and had to come back. The source walk (source row -> plan line) follows the row outside job
outputs; the output walk (a job's output line -> destination row) follows it inside `answers`
(parsing and collecting) and what that calls.
"""

from __future__ import annotations

import itertools
import os
import re
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parents[2]
MARK = "walkrow-1"  # the followed row's id
_MARK_BYTES = MARK.encode()
_QUOTED = f'"{MARK}"'

SETTINGS = "backend: local\n"
ROWS = f'{{"id": "{MARK}", "text": "hello"}}\n{{"id": "other-2", "text": "bye"}}\n'
MANIFEST = """apiVersion: batchrun/v1
kind: BatchJob
metadata:
  name: walk
spec:
  model: anthropic/claude-sonnet-4-5
  parameters: {max_tokens: 50}
  source: {file: rows.jsonl, id: id}
  prompt:
    user: "Say {{ text }}"
  destination: {file: out.jsonl}
"""


def floors() -> dict[str, int]:
    """Each top-level package or root module of runner -> its floor (0 = the bottom), from the
    layers contract in pyproject.toml."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["type"] == "layers"]
    out: dict[str, int] = {}
    for level, layer in enumerate(reversed(contract["layers"])):
        for name in re.split(r"[|:]", layer):
            out[name.strip()] = level
    return out


def _holds(value: Any, depth: int = 0) -> bool:
    """Whether `value` is, or holds within two levels, the followed row (by its id)."""
    if isinstance(value, str):
        return value == MARK or (len(value) < 100_000 and _QUOTED in value)
    if isinstance(value, bytes | bytearray):
        return len(value) < 100_000 and _MARK_BYTES in value
    if depth >= 2 or isinstance(value, type):
        return False
    if isinstance(value, dict):
        return any(_holds(v, depth + 1) for v in list(value.values())[:64])
    if isinstance(value, list | tuple):
        return any(_holds(v, depth + 1) for v in value[:64])
    if not type(value).__module__.startswith("runner."):
        return False
    slots = getattr(type(value), "__slots__", ())
    attrs = [getattr(value, s, None) for s in slots if isinstance(s, str)]
    attrs += list(getattr(value, "__dict__", {}).values())
    return any(_holds(v, depth + 1) for v in attrs[:64])


@dataclass
class Walk:
    """The calls that received the row, as (floor, room, function)."""

    calls: list[tuple[int, str, str]] = field(default_factory=list)

    def stays(self) -> list[tuple[int, str, list[str]]]:
        out: list[tuple[int, str, list[str]]] = []
        for level, room, function in self.calls:
            if not out or out[-1][1] != room:
                out.append((level, room, []))
            if function not in out[-1][2]:
                out[-1][2].append(function)
        return out

    def climbs_back(self) -> int:
        """Stays on a floor the walk had already reached before coming down from it."""
        climbs, highest = 0, -1
        stays = self.stays()
        for before, after in itertools.pairwise(stays):
            if after[0] > before[0] and after[0] <= highest:
                climbs += 1
            highest = max(highest, before[0], after[0])
        return climbs

    def text(self, title: str) -> str:
        stays = self.stays()
        lines = [f"{title}: {len(stays)} stays on {len({s[1] for s in stays})} floors, "
                 f"{self.climbs_back()} climbs back up"]
        lines += [f"  {level:2}  {room:<10} {', '.join(fns)[:90]}" for level, room, fns in stays]
        return "\n".join(lines)


def _in_answers(frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_globals.get("__name__", "").startswith("runner.answers."):
            return True
        frame = frame.f_back
    return False


@contextmanager
def traced(source: Walk, output: Walk) -> Iterator[None]:
    level = floors()

    def profile(frame: FrameType, event: str, _arg: Any) -> None:
        module = frame.f_globals.get("__name__", "")
        if event != "call" or not module.startswith("runner.") or module == __name__:
            return
        code = frame.f_code
        args = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]
        local = frame.f_locals
        if not any(_holds(local.get(a)) for a in args):
            return
        room = module.split(".")[1]
        walk = output if _in_answers(frame) else source
        name = code.co_qualname
        if code.co_name == "__init__" and "self" in local:  # a dataclass's generated __init__
            name = f"{type(local['self']).__name__}()"
        walk.calls.append((level.get(room, 0), room, name))

    sys.setprofile(profile)
    try:
        yield
    finally:
        sys.setprofile(None)


def measure(folder: Path) -> tuple[Walk, Walk]:
    """(the source walk of a plan, the output walk of the apply that collects the row's answer)."""
    import runner

    (folder / "batchrun.yaml").write_text(SETTINGS)
    (folder / "rows.jsonl").write_text(ROWS)
    (folder / "walk.yaml").write_text(MANIFEST)
    here = Path.cwd()
    os.chdir(folder)
    try:
        project = runner.load_project([])
        planned, ignored = Walk(), Walk()
        with traced(planned, ignored):
            runner.plan(project)
        runner.apply(project)
        _wait_for(lambda: all(j.state in _ENDED for j in runner.status(project)))
        ignored, collected = Walk(), Walk()
        with traced(ignored, collected):
            runner.apply(project)
        return planned, collected
    finally:
        os.chdir(here)


_ENDED = frozenset({"succeeded", "failed", "cancelled", "expired", "partially_succeeded"})


def _wait_for(done: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError("the local job did not finish")
        time.sleep(0.2)


def main() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        planned, collected = measure(Path(tmp))
    print(planned.text("source row -> plan line (batchrun plan)"))
    print(collected.text("job output line -> destination row (batchrun apply, collecting)"))


if __name__ == "__main__":
    main()

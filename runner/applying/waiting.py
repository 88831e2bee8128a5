"""apply --wait's words about waiting: which manifests hold rows back after a job-level failure
(said once per hold), and what is left when the wait times out. Reads only; no plan is made here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from runner.backends.base import BackendReader
from runner.errors import BatchrunError, error, n
from runner.events import Holding
from runner.planning.plan import NoteKind, Plan


def holds(current: Plan, said: set[tuple[str, str]]) -> Iterator[Holding]:
    """Each manifest whose rows are held back after a job-level failure, once per hold."""
    for m in current.manifests:
        if not (m.hold_until and m.rows.waiting) or (m.name, m.hold_until) in said:
            continue
        said.add((m.name, m.hold_until))
        note = next((x for x in m.notes if x.kind in (NoteKind.INTERNAL_HOLD,
                                                      NoteKind.FAILURE_HOLD)), None)
        yield Holding(m.name, m.rows.waiting, m.hold_until.replace("T", " ").removesuffix("Z"),
                      note is not None and note.kind is NoteKind.INTERNAL_HOLD,
                      note.state if note else None, note.error if note else None)


def check_timeout(started: float, timeout: float | None, current: Plan,
                   backend: BackendReader) -> None:
    """Past the timeout: stop, saying what is left — the jobs still running (they keep running,
    and are collected by the next apply), or, when none runs, the rows held back and until when."""
    if timeout is None or time.monotonic() - started <= timeout:
        return
    names = {m.name for m in current.manifests}
    running = [j for j in backend.list_jobs(in_flight_only=True) if j.manifest_name in names]
    gave_up = f"gave up waiting after {timeout:.0f}s"
    if running:
        raise BatchrunError(f"{gave_up}; jobs keep running ({n(len(running), 'job')}), run "
                            "`batchrun apply` again later to collect them")
    held = [f"{m.name} holds {n(m.rows.waiting, 'row')} until "
            f"{m.hold_until.replace('T', ' ').removesuffix('Z')} UTC" for m in current.manifests
            if m.hold_until and m.rows.waiting]
    waiting = sum(m.rows.waiting for m in current.manifests if not m.hold_until)
    left = "; ".join([*held, *([f"{n(waiting, 'row')} wait for a free job slot"]
                               if waiting else [])])
    raise BatchrunError([error(f"{gave_up}; no job is running" + (f": {left}" if left else ""),
                               hint="run `batchrun apply --wait` again" + (
                                   " after then (a back-off after a job-level failure)"
                                   if held else ""))])

"""Crash injection for the crash and race tests: with BATCHRUN_CRASH_AT=POINT[:N] the process kills
itself (SIGKILL, no cleanup) the N-th time it reaches POINT; with BATCHRUN_PAUSE_AT=POINT:SECONDS it
sleeps there. Without the variables, reached() does nothing."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from typing import Final

ENV: Final = "BATCHRUN_CRASH_AT"
PAUSE_ENV: Final = "BATCHRUN_PAUSE_AT"
POINTS: Final = ("stage", "staged", "created", "cancel", "collect", "collected",
                 "destination-written", "atomic-rename", "answered")  # answered: in a worker


class _Hits:
    counts: Counter[str] = Counter()


def reached(point: str) -> None:
    pause = os.environ.get(PAUSE_ENV)
    if pause and pause.partition(":")[0] == point:
        time.sleep(float(pause.partition(":")[2] or 1))
    spec = os.environ.get(ENV)
    if not spec:
        return
    name, _, nth = spec.partition(":")
    if name != point:
        return
    _Hits.counts[point] += 1
    if _Hits.counts[point] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)

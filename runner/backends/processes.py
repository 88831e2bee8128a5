"""Whether a process on this machine still runs, and which process a pid is: for the lock owners
of both backends and for local workers. Reads /proc where there is one. A pid means something
only inside its own PID namespace: `pid_space()` tells whether another process's pid is ours to
judge (containers sharing a folder, or a hostname, do not share pids)."""

from __future__ import annotations

import os
from pathlib import Path


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie has exited; only its parent has not reaped it yet
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def process_start(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot), or None where /proc cannot say."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19] if len(fields) > 19 else None


def pid_space() -> str:
    """Where a pid of this process is meaningful: the host, its boot and the PID namespace. Two
    processes with the same pid_space can judge each other's pids; others cannot."""
    import socket

    def read(path: str) -> str:
        try:
            return str(Path(path).readlink()) if path.startswith("/proc/self/ns") else Path(
                path).read_text().strip()
        except OSError:
            return "?"

    return "|".join((socket.gethostname(), read("/proc/sys/kernel/random/boot_id"),
                     read("/proc/self/ns/pid")))

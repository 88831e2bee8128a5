"""The apply lock on Cloud Storage as a lease: one object per lock, taken with a generation
precondition, renewed by a heartbeat, taken over only once it has run out; and the leases a backend
holds, so that each of its writes can first check they are still its own. Judges no process by pid
or host."""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from runner.backends.stores.gcs import Gcs, split
from runner.errors import LockError

log = logging.getLogger(__name__)

LEASE_ENV = "BATCHRUN_LOCK_LEASE_SECONDS"  # for the crash trials, whose killed applies leave leases


@dataclass(frozen=True)
class LeaseTimes:
    """How long a lease lasts and how often its holder renews it. 90 s survives a renewal that is
    slow or retried a few times (each renewal is one small write; the client retries it for up to
    a minute less than that), and renewing every 20 s leaves four renewals per lease."""

    ttl: timedelta = timedelta(seconds=90)
    renew_every: timedelta = timedelta(seconds=20)

    @classmethod
    def from_env(cls) -> LeaseTimes:
        seconds = os.environ.get(LEASE_ENV)
        if not seconds:
            return cls()
        return cls(timedelta(seconds=float(seconds)), timedelta(seconds=float(seconds) / 4.5))


def _when(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def _who(record: dict[str, Any]) -> str:
    return (f"pid {record.get('pid')} ({record.get('user')}@{record.get('host')}) "
            f"since {record.get('since')}")


class GcsLock:
    """One lock object holding an owner token (random, per acquisition) and an expiry.

    Who may take it over is decided by the object's generation, never by a clock or a pid: a
    challenger takes an expired-looking lease only after watching its generation stay unchanged for
    a whole lease on its own monotonic clock, then replaces exactly that generation (one conditional
    write: one winner). A live holder renews every `renew_every`, so its generation moves well
    within a lease. The expiry the holder wrote is only a hint for whether to watch at all: a
    skewed clock can make a challenger watch for nothing or refuse too early, never take a live
    lease. The price is that a dead holder's lease is taken over one lease after it looked expired.

    The holder trusts its lease for half a lease after sending its last renewal that succeeded (the
    write landed after it was sent, and a challenger watches a whole lease from after the write);
    past that it renews on the spot before writing, and a renewal that finds the object replaced
    or gone means the lease was lost. The other half is the allowance for a write in flight."""

    def __init__(self, gcs: Gcs, uri: str, *, times: LeaseTimes | None = None) -> None:
        self.gcs = gcs
        self.uri = uri
        self.times = times or LeaseTimes()
        self.name = ""
        self.token = ""
        self.since = ""
        self.generation: int | None = None
        self._renewed_at = 0.0  # monotonic time the last successful renewal was sent
        self._lost: str | None = None  # why the lease is no longer ours
        self._mutex = threading.Lock()  # the heartbeat and the write guard renew one at a time
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    # --- the object ----------------------------------------------------------------------------

    def _record(self) -> bytes:
        now = datetime.now(UTC)
        return orjson.dumps({"token": self.token, "pid": os.getpid(), "host": socket.gethostname(),
                             "user": getpass.getuser(), "since": self.since,
                             "renewed": now.isoformat(),
                             "expires": (now + self.times.ttl).isoformat(),
                             "lease_seconds": self.times.ttl.total_seconds()})

    def _read(self) -> tuple[int, dict[str, Any]] | None:
        """The lock object's generation and record (a damaged record reads as empty)."""
        from google.api_core.exceptions import NotFound

        bucket, path = split(self.uri)
        for _ in range(3):  # replaced between the two calls: read the new one
            blob = self.gcs.client.bucket(bucket).get_blob(path)
            if blob is None:
                return None
            generation = int(blob.generation or 0)  # before the download resets it
            try:  # the client asks for exactly the generation it just saw
                record = orjson.loads(blob.download_as_bytes())
            except NotFound:
                continue
            except orjson.JSONDecodeError:
                record = {}
            return generation, record if isinstance(record, dict) else {}
        return None

    def _write(self, if_generation_match: int, *, again: bool = True) -> bool:
        """Write our record if the object is at that generation (0: absent); whether it is ours."""
        from google.api_core.exceptions import NotFound, PreconditionFailed

        blob = self.gcs.blob(self.uri)
        try:
            blob.upload_from_string(self._record(), content_type="application/json",
                                    if_generation_match=if_generation_match)
        except (PreconditionFailed, NotFound):
            # The client retries a conditional write whose answer was lost: that first try may
            # have landed (our token is there), now or in an earlier call that failed. Write once
            # more on top of it, so the lease runs from a write made after this call began.
            current = self._read()
            if current is None or current[1].get("token") != self.token:
                return False
            if again:
                return self._write(current[0], again=False)
            self.generation = current[0]
            return True
        self.generation = int(blob.generation) if blob.generation is not None else None
        return True

    def _expired_by_record(self, record: dict[str, Any]) -> bool:
        expires = _when(record.get("expires"))
        return expires is None or expires.astimezone(UTC) < datetime.now(UTC)

    def _unchanged_for(self, generation: int, record: dict[str, Any], then: str) -> bool:
        """Watch the object for a whole lease (the longer of ours and the holder's); whether its
        generation stayed `generation` throughout (generations are never reused)."""
        try:
            span = max(self.times.ttl.total_seconds(), float(record.get("lease_seconds") or 0))
        except (TypeError, ValueError):
            span = self.times.ttl.total_seconds()
        log.warning("the lock %s looks expired: watching it for %.0f s before %s it", self.uri,
                    span, then)
        deadline = time.monotonic() + span
        while (left := deadline - time.monotonic()) > 0:
            self._stop.wait(min(left, self.times.renew_every.total_seconds() / 2))
            current = self._read()
            if current is None or current[0] != generation:
                return False
        return True

    # --- taking, renewing, giving back ---------------------------------------------------------

    def acquire(self, name: str) -> None:
        self.name, self.token = name, secrets.token_hex(16)
        self.since = datetime.now(UTC).isoformat()
        sent = time.monotonic()
        if not self._write(0):
            current = self._read()
            if current is None:  # released between our write and our read
                if not self._write(0):
                    raise LockError(f"{name} is being applied by another process; try again")
            else:
                generation, record = current
                if not self._expired_by_record(record):
                    raise LockError(f"{name} is being applied by {_who(record)} (its lease runs "
                                    f"until {record.get('expires')}); try again when it finishes")
                if not self._unchanged_for(generation, record, "taking over"):
                    raise LockError(f"{name} is being applied by {_who(record)}, which renewed "
                                    "its lease while we waited for it to run out; try again when "
                                    "it finishes")
                sent = time.monotonic()
                if not self._write(generation):
                    raise LockError(f"{name}: another process took the expired lock first; "
                                    "try again")
        self._renewed_at = sent
        self._heartbeat = threading.Thread(target=self._beat, name=f"lease {name}", daemon=True)
        self._heartbeat.start()

    def _renew(self) -> bool:
        """One conditional renewal (holding the mutex); False: the lease is lost."""
        if self._lost is not None:
            return False
        sent = time.monotonic()
        if self.generation is not None and self._write(self.generation):
            self._renewed_at = sent
            return True
        current = self._read()
        self._lost = ("its lease ran out; the lock was taken or removed since" if current is None else
                      f"its lease ran out; now held by {_who(current[1])}")
        return False

    def _beat(self) -> None:
        while not self._stop.wait(self.times.renew_every.total_seconds()):
            with self._mutex:
                # Said by check(), at the next write, if it matters.
                try:
                    if not self._renew():
                        log.info("lost the lock of %s: %s", self.name, self._lost)
                        return
                except Exception as exc:  # a slow or failing network: the lease has slack
                    log.info("could not renew the lock of %s: %s", self.name, exc)

    def check(self) -> None:
        """Before a remote write: LockError unless the lease is still ours."""
        with self._mutex:
            if self._lost is None and (time.monotonic() - self._renewed_at
                                       < self.times.ttl.total_seconds() / 2):
                return
            try:
                held = self._renew()
            except Exception as exc:  # unproven is as good as lost: another apply may take it
                raise LockError(f"could not renew the lock of {self.name} ({exc}): stopped before "
                                "writing; run the command again") from None
            if not held:
                raise LockError(f"lost the lock of {self.name} to another apply ({self._lost}): "
                                "stopped before writing; run the command again")

    def release(self) -> None:
        from google.api_core.exceptions import NotFound, PreconditionFailed

        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=self.times.ttl.total_seconds())
        with self._mutex, contextlib.suppress(PreconditionFailed, NotFound):
            if self._lost is not None or self.generation is None:
                return  # not ours any more: never free another holder's lock
            try:
                self.gcs.blob(self.uri).delete(if_generation_match=self.generation)
            except PreconditionFailed:  # a write of ours whose answer was lost moved it on
                current = self._read()
                if current is not None and current[1].get("token") == self.token:
                    self.gcs.blob(self.uri).delete(if_generation_match=current[0])

    def force(self, name: str) -> str:
        """`batchrun unlock`: remove the lock only once its lease has run out."""
        from google.api_core.exceptions import NotFound, PreconditionFailed

        current = self._read()
        if current is None:
            return f"{name} was not locked"
        generation, record = current
        if not self._expired_by_record(record):
            raise LockError(f"{name} is locked by {_who(record)}, whose lease runs until "
                            f"{record.get('expires')}; refusing to unlock (the lock goes when "
                            "that apply ends, and an apply takes it over once the lease runs out)")
        if not self._unchanged_for(generation, record, "removing"):
            raise LockError(f"{name} is locked by {_who(record)}, which renewed its lease while "
                            "we watched it; refusing to unlock")
        try:
            self.gcs.blob(self.uri).delete(if_generation_match=generation)
        except (PreconditionFailed, NotFound):
            return f"{name} was taken by another apply meanwhile; left it"
        return f"removed the expired lock of {name}"


class Leases:
    """The leases one backend holds: apply holds one manifest's locks at a time (its own and its
    destination's), so every write the backend makes meanwhile is for that manifest."""

    def __init__(self, times: LeaseTimes) -> None:
        self.times = times
        self.held: dict[str, GcsLock] = {}

    @contextlib.contextmanager
    def hold(self, lock: GcsLock, name: str) -> Iterator[None]:
        lock.acquire(name)
        self.held[name] = lock
        try:
            yield
        finally:
            self.held.pop(name, None)
            lock.release()

    def check(self) -> None:
        """LockError, before a write, if any lease held has been lost."""
        for lock in list(self.held.values()):
            lock.check()

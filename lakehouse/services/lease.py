"""One writer per checkpoint across machines: a lease on the object store (checkpoints on s3a://).

On a local disk the stream lock is an ``flock`` (``lakehouse.services.streams.exclusive``), which the
kernel releases when the process dies. Drivers on different machines share no kernel; their checkpoints
share a bucket, and S3's conditional put (``If-None-Match: *``: 412 when the key exists) is the one atomic
"create unless taken" they share. The lease of an app is a numbered object under its checkpoint
directory, ``<checkpoints>/<app>/_lease/<generation>``, holding who took it and when it was last renewed:

- **take**: the highest generation is live (renewed within ``TTL_S``, and, when its holder is on this
  machine, its process alive) -> refused, naming the holder; otherwise create generation + 1,
  conditionally. Two drivers racing for the same generation: one create succeeds, the other gets 412 and
  is refused. Older generations are then deleted.
- **renew**: every ``RENEW_S`` the holder rewrites its own object (nobody else writes that key). Before
  that it checks that no higher generation exists; if one does (this driver was frozen longer than the
  TTL and another took over), or the store could not be reached for a whole TTL, the driver is told to
  stop (SIGTERM: a graceful stop, its batch not committed), so two writers never run on for long.
- **release**: delete its object. A driver killed outright leaves it; on this machine the next driver
  sees the dead pid and takes over at once, elsewhere after ``TTL_S``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psutil

if TYPE_CHECKING:
    from lakehouse.settings import Settings

#: A lease not renewed for this long is free (its holder is gone, or cut off from the store).
TTL_S = 30.0
RENEW_S = 10.0
LEASE_DIR = "_lease"


class LeaseTakenError(RuntimeError):
    """Another driver holds the lease."""


@dataclass(frozen=True)
class Holder:
    generation: int
    host: str
    pid: int
    token: str
    renewed: float

    def live(self, now: float | None = None) -> bool:
        if (now or time.time()) - self.renewed >= TTL_S:
            return False
        return not (self.host == socket.gethostname() and not psutil.pid_exists(self.pid))

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, renewed {time.time() - self.renewed:.0f}s ago"


class S3Lease:
    """The lease of the checkpoint directory ROOT (an ``s3a://`` URI) on the lake's object store."""

    def __init__(self, s: Settings, root: str) -> None:
        from lakehouse.storage import filesystem, parse_s3a

        loc = parse_s3a(root)
        self.fs = filesystem(s)
        self.prefix = f"{loc.bucket}/{loc.prefix}/{LEASE_DIR}"
        self.root = root
        self.mine: Holder | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _key(self, generation: int) -> str:
        return f"{self.prefix}/{generation:012d}"

    def _generations(self) -> list[int]:
        try:
            names = self.fs.ls(self.prefix, detail=False, refresh=True)
        except FileNotFoundError:
            return []
        return sorted(int(n.rsplit("/", 1)[-1]) for n in names if n.rsplit("/", 1)[-1].isdigit())

    def _read(self, generation: int) -> Holder | None:
        try:
            doc: dict[str, Any] = json.loads(self.fs.cat_file(self._key(generation)))
        except (FileNotFoundError, ValueError):
            return None
        return Holder(generation, str(doc["host"]), int(doc["pid"]), str(doc["token"]), float(doc["renewed"]))

    def holder(self) -> Holder | None:
        """Who holds the lease now, or None when it is free."""
        gens = self._generations()
        top = self._read(gens[-1]) if gens else None
        return top if top is not None and top.live() else None

    def _put(self, h: Holder, create: bool) -> None:
        doc = {"host": h.host, "pid": h.pid, "token": h.token, "renewed": h.renewed}
        self.fs.pipe_file(self._key(h.generation), json.dumps(doc).encode(), mode="create" if create else "overwrite")

    def acquire(self) -> None:
        gens = self._generations()
        top = self._read(gens[-1]) if gens else None
        if top is not None and top.live():
            raise LeaseTakenError(f"held by {top.describe()}")
        mine = Holder((gens[-1] if gens else 0) + 1, socket.gethostname(), os.getpid(), uuid.uuid4().hex, time.time())
        try:
            self._put(mine, create=True)
        except OSError as exc:  # 412: another driver created this generation first
            raise LeaseTakenError(f"taken by another driver a moment ago ({exc})") from None
        self.mine = mine
        for old in gens:
            self.fs.rm_file(self._key(old))
        self._thread = threading.Thread(target=self._renew, name=f"lease {self.root}", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        assert self.mine is not None
        last_ok = time.monotonic()
        while not self._stop.wait(RENEW_S):
            try:
                newer = [g for g in self._generations() if g > self.mine.generation]
                if newer:
                    self._lost(f"another driver took it over (generation {newer[-1]})")
                    return
                self.mine = Holder(**{**self.mine.__dict__, "renewed": time.time()})
                self._put(self.mine, create=False)
                last_ok = time.monotonic()
            except OSError as exc:
                if time.monotonic() - last_ok >= TTL_S:
                    self._lost(f"the object store could not be reached for {TTL_S:.0f}s ({exc})")
                    return

    def _lost(self, why: str) -> None:
        print(
            f"error: lost the checkpoint lease of {self.root}: {why}; stopping, so that one writer alone commits "
            "to these checkpoints",
            file=sys.stderr,
            flush=True,
        )
        os.kill(os.getpid(), signal.SIGTERM)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.mine is not None:
            try:
                current = self._read(self.mine.generation)
                if current is not None and current.token == self.mine.token:
                    self.fs.rm_file(self._key(self.mine.generation))
            except OSError:
                pass  # it expires by itself
            self.mine = None

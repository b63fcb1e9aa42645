"""One active instance, hot standbys: a lease in a JetStream KV bucket.

The holder renews its key with a compare-and-set on the revision it wrote; a
standby tries to create the key, which succeeds only once the holder's last
renewal has aged out of the bucket (its max_age is the lease time). A holder
whose renewal fails has lost the lease and stops acting at once.

The lease keeps the standbys idle; it is not what keeps a job from being sent
twice (the compare-and-set on the job's stream does that). What a deposed holder
sent late must not count either: each holding has an epoch, the revision at which
it was created, which rises with every hand-over (renewals keep it), and the
dispatcher puts it in every send; an executor refuses a send from an epoch older
than one it has seen (services/executor/fencing.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable

from nats.js import JetStreamContext
from nats.js.errors import KeyWrongLastSequenceError

from shared import ids
from shared.streams import LEASES_BUCKET

log = logging.getLogger(__name__)

LEASE_S = 10.0  # the bucket's max_age: how long a dead holder keeps the lease
RENEW_S = 2.0


def holder_name(role: str) -> str:
    return f"{role}@{socket.gethostname()}:{os.getpid()}:{ids.new_id()[-6:]}"


def lease_value(holder: str, epoch: int) -> bytes:
    """The lease key's value: who holds it, since which epoch."""
    return f"{holder} epoch={epoch}".encode()


def epoch_of(value: bytes | None) -> int | None:
    """The epoch a lease value names (None: a holding not announced yet, or no holder)."""
    if not value:
        return None
    _, sep, epoch = value.decode(errors="replace").rpartition(" epoch=")
    return int(epoch) if sep and epoch.isdigit() else None


class Lease:
    def __init__(self, js: JetStreamContext, role: str, renew_s: float = RENEW_S) -> None:
        self.js = js
        self.role = role
        self.holder = holder_name(role)
        self.renew_s = renew_s
        self.held = asyncio.Event()
        self.on_acquire: Callable[[], None] | None = None
        self._revision: int | None = None
        self.epoch: int | None = None  # the revision this holding began at; None while not held

    async def _try(self) -> bool:
        try:
            kv = await self.js.key_value(LEASES_BUCKET)
            if self._revision is None:
                # Take it, then say at once which epoch this holding is (the revision it
                # was taken at), so that whoever reads the key knows it without history.
                created = await kv.create(self.role, self.holder.encode())
                self._revision = await kv.update(self.role, lease_value(self.holder, created), last=created)
                self.epoch = created
            else:
                assert self.epoch is not None
                self._revision = await kv.update(self.role, lease_value(self.holder, self.epoch), last=self._revision)
            return True
        except KeyWrongLastSequenceError:
            self._revision = self.epoch = None
            return False
        except Exception as e:  # "key exists" (someone holds it), NATS unreachable or electing a leader
            if self._revision is not None:
                log.warning("lease renewal failed: %s", e, extra={"role": self.role})
            self._revision = self.epoch = None
            return False

    async def keep(self, stop: asyncio.Event) -> None:
        """Hold the lease whenever possible until `stop`; `held` says whether we have it."""
        try:
            while not stop.is_set():
                had = self.held.is_set()
                if await self._try():
                    self.held.set()
                    if not had:
                        log.info("lease acquired: active", extra={"role": self.role, "holder": self.holder})
                        if self.on_acquire is not None:
                            self.on_acquire()
                else:
                    if had:
                        log.warning("lease lost: standing by", extra={"role": self.role})
                    self.held.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.renew_s)
        finally:
            if self.held.is_set() and self._revision is not None:
                # Hand over at once rather than after LEASE_S.
                try:
                    kv = await self.js.key_value(LEASES_BUCKET)
                    await kv.delete(self.role, last=self._revision)
                except Exception as e:
                    log.debug("could not release the lease: %s", e)
            self.held.clear()

"""Fencing: a send from a dispatcher that has since been deposed is refused.

Dispatchers hold a lease; each holding has an epoch (the lease's revision when it was
taken, written into the lease's value) and every send carries it. A dispatcher can lose its lease while a send is on the
way (paused, partitioned); meanwhile its successor decides with the slots that send
would take. So an executor keeps the newest epoch it has seen, from the lease key itself
(watched) and from the sends it accepted, and refuses a send from an older one: it puts
the job back in the queue instead of running it, and the limits hold.
"""

from __future__ import annotations

import asyncio
import logging

from nats.js import JetStreamContext

from shared.lease import epoch_of
from shared.streams import LEASES_BUCKET

log = logging.getLogger(__name__)

ROLE = "dispatcher"
RETRY_S = 1.0


class Fence:
    def __init__(self) -> None:
        self.epoch = 0  # the newest dispatcher epoch seen

    def admits(self, epoch: int | None) -> bool:
        """Whether a send of `epoch` may run; None (sent without a lease) always may."""
        if epoch is None:
            return True
        if epoch < self.epoch:
            return False
        self.epoch = epoch
        return True

    def saw(self, value: bytes | None) -> None:
        """A value of the lease key: it names its holding's epoch (shared/lease.py)."""
        epoch = epoch_of(value)
        if epoch is not None:
            self.epoch = max(self.epoch, epoch)

    async def watch(self, js: JetStreamContext) -> None:
        """Follow the lease key until cancelled (and again after any trouble)."""
        while True:
            try:
                kv = await js.key_value(LEASES_BUCKET)
                watcher = await kv.watch(ROLE)
                async for entry in watcher:
                    if entry is None:
                        continue  # the end of the current values
                    if entry.operation not in ("DEL", "PURGE"):
                        self.saw(entry.value)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # no bucket yet, NATS away: sends' own epochs still count
                log.debug("cannot watch the dispatcher lease yet: %s", e)
            await asyncio.sleep(RETRY_S)

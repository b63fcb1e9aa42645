"""The dispatcher's fold, saved now and then, so a restart reads it and the stream's tail.

BORGFLOW_JOBS is kept forever: replaying it at every start costs what the system has ever
done (71 s at 400,000 events). The active dispatcher saves what it folded (the jobs not
ended, their specs and order, the follow-ups due) with the stream sequence it covers, into
the object store bucket `borgflow_snapshots`, at most every SAVE_EVERY_S and only after
something changed; a start loads it and follows the stream from that sequence on.

A snapshot is a cache of the stream, never the truth: one that cannot be read (missing,
from another version, damaged) is ignored and the stream replayed from the start, and
every send is still guarded by the job's own last sequence on the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
import zlib
from typing import TYPE_CHECKING

import msgspec
from nats.js import JetStreamContext

from shared.events import JobSpec
from shared.jobs import JobView
from shared.streams import SNAPSHOTS_BUCKET

if TYPE_CHECKING:
    from services.dispatcher.app import Dispatcher

log = logging.getLogger(__name__)

NAME = "dispatcher"
VERSION = 1
SAVE_EVERY_S = 30.0  # at most this often...
SAVE_AFTER_EVENTS = 1  # ...and only once this many events were folded in since the last one
CHECK_S = 5.0


class State(msgspec.Struct, kw_only=True):
    """What a dispatcher folded from BORGFLOW_JOBS up to `seq`."""

    version: int = VERSION
    seq: int
    views: list[JobView]
    specs: dict[str, JobSpec]
    first_seq: dict[str, int]
    tail: dict[str, int]
    chains_due: dict[str, JobSpec]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(State)


def encode(state: State) -> bytes:
    return zlib.compress(_encoder.encode(state), 1)


def decode(raw: bytes) -> State:
    return _decoder.decode(zlib.decompress(raw))


class Snapshots:
    def __init__(self, js: JetStreamContext) -> None:
        self.js = js
        self.events_since = 0
        self.saved_at = time.monotonic()
        self.saved_seq = 0

    def changed(self, events: int) -> None:
        self.events_since += events

    async def load(self) -> State | None:
        """The last snapshot, or None (none yet, or unreadable: then the stream is replayed)."""
        try:
            store = await self.js.object_store(SNAPSHOTS_BUCKET)
            buffer = io.BytesIO()
            await store.get(NAME, writeinto=buffer)
            state = decode(buffer.getvalue())
        except Exception as e:  # missing bucket or object, another version, damage
            log.info("no snapshot to start from (%s): reading BORGFLOW_JOBS from the start", type(e).__name__)
            return None
        if state.version != VERSION:
            log.info("ignoring a snapshot of version %d", state.version)
            return None
        self.saved_seq = state.seq
        return state

    async def save(self, state: State) -> None:
        raw = encode(state)
        store = await self.js.object_store(SNAPSHOTS_BUCKET)
        await store.put(NAME, raw)
        self.saved_seq = state.seq
        log.info("snapshot saved", extra={"seq": state.seq, "jobs": len(state.views), "bytes": len(raw)})

    async def keep(self, dispatcher: Dispatcher, stop: asyncio.Event) -> None:
        """Save the active dispatcher's fold now and then, until `stop`."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), CHECK_S)
            due = time.monotonic() - self.saved_at >= SAVE_EVERY_S and self.events_since >= SAVE_AFTER_EVENTS
            if not (due and dispatcher.active and dispatcher.ready.is_set()):
                continue
            # Taken in one go (nothing else runs meanwhile), so it is the fold at exactly `seq`.
            state = dispatcher.state()
            self.events_since = 0
            self.saved_at = time.monotonic()
            try:
                await self.save(state)
            except Exception as e:  # NATS away: the next one will do
                log.warning("could not save a snapshot: %s", e)

"""The projector's composition: follow three streams into Postgres, one transaction per batch.

Each stream's position is stored in the same transaction as the rows it
produced, so a crash anywhere replays at most an uncommitted batch, and
replaying it changes nothing. A batch that cannot be written (Postgres down)
is retried as it is, in order, until it can.

Several projectors may run on one database: together they write exactly what
one would. A batch's transaction first locks its projection's checkpoint row,
so the writers of one projection take turns, and each applies only the events
past the checkpoint it finds there. Every event is then applied once and in
stream order, whoever applies it: a projector that fell behind (paused, or slow
to commit) holds events at or below the checkpoint, and skips them, so it never
writes back a job another deleted, an archive a prune removed, or an older
progress or heartbeat. The jobs projection deletes a deleted job's progress
under the progress projection's lock too, so a progress batch in flight cannot
write it back after the delete (store.py).

A projector that is behind skips what it has seen written without asking
Postgres, and follows again from the checkpoint once it is more than a batch
behind it. One that finds the checkpoint below its own position (a rebuild
dropped the read model under it) follows again from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import asyncpg
import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from services.projector import store
from services.projector.domain import apply_batch
from shared import bus, db, probes, readmodel
from shared.config import Settings
from shared.db import Conn
from shared.events import AgentHeartbeat, JobEvent, JobProgress, decode
from shared.follow import ahead, caught_up, follow
from shared.runtime import cancel_and_wait, resilient
from shared.streams import AGENTS, JOBS, PROGRESS, ensure_streams

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_S = 0.5
PRUNE_EVERY_S = 3600.0

Events = list[tuple[object, int]]
# Applies a batch's events past the checkpoint (given too), under the projection's lock.
Write = Callable[[Conn, Events, int], Awaitable[None]]


def _decoded(msgs: list[Msg]) -> Events:
    out: Events = []
    for m in msgs:
        seq = bus.seq_of(m)
        try:
            out.append((decode(m.data), seq))
        except msgspec.MsgspecError as e:
            # A bad message is skipped (its position still advances), never fatal.
            log.warning("skipping a malformed message: %s", e, extra={"subject": m.subject, "seq": seq})
    return out


async def _with_events(batches: AsyncIterator[list[Msg]]) -> AsyncIterator[tuple[list[Msg], Events]]:
    """Each batch with its events decoded, by the task that fetches ahead (`ahead`): the
    next batch is decoded while Postgres writes the last one, not after."""
    async for msgs in batches:
        yield msgs, _decoded(msgs)


class Projector:
    def __init__(self, pool: asyncpg.Pool, js: JetStreamContext) -> None:
        self.pool = pool
        self.js = js
        # Set once the jobs projection has written everything the stream had (health).
        self.caught_up = asyncio.Event()
        # Per projection, how far this projector has gone: each batch up to there is
        # written, by this projector or by another.
        self.positions: dict[str, int] = {}
        # Per projection, the highest checkpoint this projector has seen.
        self._written: dict[str, int] = {}
        self._pruned_at = time.monotonic()

    async def holding(self, name: str, last: int) -> None:
        """Called in a batch's transaction once it holds the projection's lock: a seam for tests."""

    async def _write(self, what: str, write: Callable[[Conn], Awaitable[T]]) -> T:
        while True:
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    return await write(conn)
            except db.TRANSIENT as e:
                log.warning("cannot write %s yet, retrying: %s", what, e)
                await asyncio.sleep(RETRY_S)

    async def _position(self, name: str) -> int:
        # lock_checkpoint creates the row if it is missing: from now on the api's writes
        # ahead of the projector have a row to wait on (shared/readmodel.py).
        return await self._write(f"checkpoint {name}", lambda conn: readmodel.lock_checkpoint(conn, name))

    async def _stream_end(self, stream: str) -> int:
        return int((await self.js.stream_info(stream)).state.last_seq or 0)

    async def jobs(self) -> None:
        # Big batches, fetched while the one before is written: a rebuild or a backlog is
        # bound by Postgres, not by waiting for NATS in between.
        await self._follow(store.JOBS, JOBS, "borgflow.jobs.>", self._write_jobs, batch=2000)

    async def progress(self) -> None:
        await self._follow(store.PROGRESS, PROGRESS, "borgflow.progress.>", self._write_progress)

    async def agents(self) -> None:
        await self._follow(store.AGENTS, AGENTS, "borgflow.agents.>", self._write_agents)

    async def _follow(self, name: str, stream: str, subject: str, write: Write, *, batch: int = 500) -> None:
        """Follow `stream` into projection `name` forever."""
        after = await self._position(name)
        while True:  # each turn follows from `after`, until the checkpoint says where to go on from
            self.positions[name] = self._written[name] = after
            if name == store.JOBS:
                end = await bus.patiently(f"reading {stream}", lambda: self._stream_end(stream))
                if after >= end:
                    self.caught_up.set()
            after = await self._turn(name, stream, subject, write, after, batch)

    async def _turn(self, name: str, stream: str, subject: str, write: Write, after: int, batch: int) -> int:
        """Project batches from `after` on; returns where to follow again from."""
        batches = follow(self.js, stream, [subject], after, batch=batch, follower=f"projector-{name}")
        async with contextlib.aclosing(ahead(_with_events(batches))) as fetched:
            async for msgs, events in fetched:
                last = bus.seq_of(msgs[-1])
                if last > self._written[name]:  # else written, as this projector saw: skip it

                    async def locked(conn: Conn, events: Events = events, after: int = after, last: int = last) -> int:
                        return await self._apply(conn, name, write, events, after, last)

                    checkpoint = await self._write(name, locked)
                    if checkpoint < after:
                        log.warning(
                            "projection %s restarted below this projector (%d < %d): following again from there",
                            name,
                            checkpoint,
                            after,
                        )
                        return checkpoint
                    self._written[name] = max(self._written[name], checkpoint)
                after = self.positions[name] = last
                if name == store.JOBS:
                    await self._after_jobs(msgs)
                if self._written[name] - last > batch:
                    # Far behind what others wrote: a new consumer from there beats fetching it all.
                    log.info("projection %s is at %d, this one at %d: skipping ahead", name, self._written[name], last)
                    return self._written[name]
        return after  # follow() yields forever or raises; were it to end, follow again

    async def _apply(self, conn: Conn, name: str, write: Write, events: Events, after: int, last: int) -> int:
        """Write a batch's events past the checkpoint, holding its lock; returns the checkpoint then."""
        checkpoint = await readmodel.lock_checkpoint(conn, name)
        await self.holding(name, last)
        if checkpoint < after or checkpoint >= last:
            return checkpoint  # dropped under us (the caller follows again), or written by another
        await write(conn, [(e, s) for e, s in events if s > checkpoint], checkpoint)
        await readmodel.set_checkpoint(conn, name, last)
        return last

    async def _after_jobs(self, msgs: list[Msg]) -> None:
        if caught_up(msgs):
            self.caught_up.set()
        if time.monotonic() - self._pruned_at > PRUNE_EVERY_S:
            self._pruned_at = time.monotonic()
            await self._write("finish counts", store.prune_finish_counts)

    async def _write_jobs(self, conn: Conn, events: Events, checkpoint: int) -> None:
        job_events = [(e, s) for e, s in events if isinstance(e, JobEvent)]
        ids = sorted({e.job_id for e, _ in job_events if e.job_id})
        current = await readmodel.load_views(conn, ids)
        await store.write_batch(conn, apply_batch(current, job_events, checkpoint))

    async def _write_progress(self, conn: Conn, events: Events, checkpoint: int) -> None:
        rows = [(e.job_id, s, e.at, e.data) for e, s in events if isinstance(e, JobProgress) and e.job_id]
        await store.write_progress(conn, rows)

    async def _write_agents(self, conn: Conn, events: Events, checkpoint: int) -> None:
        await store.write_heartbeats(conn, [(e.at, e.data) for e, _ in events if isinstance(e, AgentHeartbeat)])


async def rebuild(pool: asyncpg.Pool) -> None:
    """Drop the read model; the next run replays every stream from the start."""
    async with pool.acquire() as conn, conn.transaction():
        await store.drop_read_model(conn)


async def run(settings: Settings, stop: asyncio.Event, *, rebuild_first: bool = False) -> None:
    """Project until `stop` is set."""
    pool = await db.create_pool(settings.database_url, min_size=1, max_size=4)
    nc = await bus.connect(settings.nats_url, "projector")
    try:
        js = nc.jetstream()
        await bus.patiently("creating the streams", lambda: ensure_streams(js, replicas=settings.stream_replicas))
        if rebuild_first:
            await rebuild(pool)
            log.info("read model dropped: replaying the streams")
        p = Projector(pool, js)

        def problem() -> str | None:
            if not nc.is_connected:
                return "NATS is not connected"
            return None if p.caught_up.is_set() else "catching up with BORGFLOW_JOBS"

        with probes.registered("projector", problem):
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(resilient(name, follower), name=name)
                    for name, follower in (
                        ("projector-jobs", p.jobs),
                        ("projector-progress", p.progress),
                        ("projector-agents", p.agents),
                    )
                ]
                await stop.wait()
                await cancel_and_wait(*tasks)
    finally:
        await nc.close()
        await pool.close()

"""The projector's composition: follow three streams into Postgres, one transaction per batch.

Each stream's position is stored in the same transaction as the rows it
produced, so a crash anywhere replays at most an uncommitted batch, and
replaying it changes nothing. A batch that cannot be written (Postgres down)
is retried as it is, in order, until it can.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

import asyncpg
import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from services.projector import store
from services.projector.domain import apply_batch
from shared import bus, db, readmodel
from shared.config import Settings
from shared.db import Conn
from shared.events import AgentHeartbeat, HeartbeatData, JobEvent, JobProgress, Progress, decode
from shared.follow import follow
from shared.streams import AGENTS, JOBS, PROGRESS, ensure_streams

log = logging.getLogger(__name__)

RETRY_S = 0.5


def _decoded(msgs: list[Msg]) -> list[tuple[object, int]]:
    out: list[tuple[object, int]] = []
    for m in msgs:
        seq = bus.seq_of(m)
        try:
            out.append((decode(m.data), seq))
        except msgspec.MsgspecError as e:
            # A bad message is skipped (its position still advances), never fatal.
            log.warning("skipping a malformed message: %s", e, extra={"subject": m.subject, "seq": seq})
    return out


class Projector:
    def __init__(self, pool: asyncpg.Pool, js: JetStreamContext) -> None:
        self.pool = pool
        self.js = js

    async def _write(self, what: str, write: Callable[[Conn], Awaitable[None]]) -> None:
        while True:
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    await write(conn)
                return
            except db.TRANSIENT as e:
                log.warning("cannot write %s yet, retrying: %s", what, e)
                await asyncio.sleep(RETRY_S)

    async def _position(self, name: str) -> int:
        while True:
            try:
                async with self.pool.acquire() as conn:
                    return await readmodel.get_checkpoint(conn, name)
            except db.TRANSIENT as e:
                log.warning("cannot read checkpoint %s yet: %s", name, e)
                await asyncio.sleep(RETRY_S)

    async def jobs(self) -> None:
        after = await self._position(store.JOBS)
        async for msgs in follow(self.js, JOBS, ["borgflow.jobs.>"], after):
            events = [(e, s) for e, s in _decoded(msgs) if isinstance(e, JobEvent)]
            last = bus.seq_of(msgs[-1])

            async def write(conn: Conn, events: list[tuple[JobEvent, int]] = events, last: int = last) -> None:
                checkpoint = await readmodel.get_checkpoint(conn, store.JOBS)
                ids = sorted({e.job_id for e, _ in events if e.job_id})
                current = await readmodel.load_views(conn, ids)
                result = apply_batch(current, events, checkpoint)
                await store.write_batch(conn, result, last)

            await self._write("jobs", write)

    async def progress(self) -> None:
        after = await self._position(store.PROGRESS)
        async for msgs in follow(self.js, PROGRESS, ["borgflow.progress.>"], after):
            rows: list[tuple[str, int, datetime, Progress]] = []
            for e, seq in _decoded(msgs):
                if isinstance(e, JobProgress) and e.job_id:
                    rows.append((e.job_id, seq, e.at, e.data))
            last = bus.seq_of(msgs[-1])

            async def write(
                conn: Conn,
                rows: list[tuple[str, int, datetime, Progress]] = rows,
                last: int = last,
            ) -> None:
                await store.write_progress(conn, rows)
                await readmodel.set_checkpoint(conn, store.PROGRESS, last)

            await self._write("progress", write)

    async def agents(self) -> None:
        after = await self._position(store.AGENTS)
        async for msgs in follow(self.js, AGENTS, ["borgflow.agents.>"], after):
            beats: list[tuple[datetime, HeartbeatData]] = [
                (e.at, e.data) for e, _ in _decoded(msgs) if isinstance(e, AgentHeartbeat)
            ]
            last = bus.seq_of(msgs[-1])

            async def write(
                conn: Conn,
                beats: list[tuple[datetime, HeartbeatData]] = beats,
                last: int = last,
            ) -> None:
                await store.write_heartbeats(conn, beats, last)

            await self._write("agents", write)


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
        await ensure_streams(js)
        if rebuild_first:
            await rebuild(pool)
            log.info("read model dropped: replaying the streams")
        p = Projector(pool, js)
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(p.jobs(), name="projector-jobs"),
                tg.create_task(p.progress(), name="projector-progress"),
                tg.create_task(p.agents(), name="projector-agents"),
            ]
            await stop.wait()
            for t in tasks:
                t.cancel()
    finally:
        await nc.close()
        await pool.close()

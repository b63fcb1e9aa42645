"""`borgflow projector --rebuild` while other projectors run: they replay with it, none skips ahead.

A projector that finds its projection's checkpoint below its own position (the read
model was dropped under it) follows again from the checkpoint. Had it applied its
next batch on top of the dropped model instead, it would move the checkpoint past
every event the rebuild had not reached yet, and the rebuild would skip them.
"""

from __future__ import annotations

import asyncio

import asyncpg
from nats.js import JetStreamContext

from services.projector import store
from services.projector.app import Projector, rebuild
from shared import bus, readmodel
from shared import events as ev
from shared.runtime import cancel_and_wait
from tests.projector.holding import Held, waiting_for_a_lock
from tests.support.events import spec
from tests.support.waiting import eventually

# More job events than one batch, so that the rebuild's first batch does not reach the end.
JOBS = 2_100


async def queue(js: JetStreamContext, n: int) -> int:
    """`n` jobs queued (appended a chunk at a time, pipelined); returns the last sequence."""
    last = 0
    for start in range(0, n, 300):
        specs = [spec("ping") for _ in range(min(300, n - start))]
        acks = await asyncio.gather(*(bus.publish(js, ev.JobQueued(job_id=s.id, data=s)) for s in specs))
        last = max(last, *(int(a.seq) for a in acks))
    return last


async def test_a_running_projector_replays_with_a_rebuild(js: JetStreamContext, pool: asyncpg.Pool) -> None:
    end = await queue(js, JOBS)
    running = Projector(pool, js)
    rebuilding = Held(pool, js)
    tasks = [asyncio.create_task(running.jobs())]
    try:

        async def projected() -> bool:
            return running.positions.get(store.JOBS, 0) >= end

        await eventually(projected, what="the running projector at the stream's end")
        await rebuild(pool)
        tasks.append(asyncio.create_task(rebuilding.jobs()))
        await eventually(rebuilding.held, what="the rebuild holding its first batch")
        end = await queue(js, 1)  # the running projector has a batch to write: it waits for the lock

        async def waiting() -> bool:
            return await waiting_for_a_lock(pool, "%FOR UPDATE%")

        await eventually(waiting, what="the running projector waiting for the rebuild's batch")
        rebuilding.release.set()

        async def both_at_the_end() -> bool:
            return all(p.positions.get(store.JOBS, 0) >= end for p in (running, rebuilding))

        await eventually(both_at_the_end, what="both projectors at the stream's end")
    finally:
        rebuilding.release.set()
        await cancel_and_wait(*tasks)
    async with pool.acquire() as conn:
        assert await readmodel.get_checkpoint(conn, store.JOBS) == end
        assert await conn.fetchval("SELECT count(*) FROM jobs") == JOBS + 1
        assert await conn.fetchval("SELECT n FROM job_status_counts WHERE status = 'queued'") == JOBS + 1

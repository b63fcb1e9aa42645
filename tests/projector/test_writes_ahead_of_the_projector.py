"""The api's rows written ahead of the projector (a new job's first row, a cancel) never undo a deletion.

The api writes a job's row right after appending its event, so a client reads it back
at once. Should that write be slow, the projector may have applied the job's whole
life meanwhile, its deletion included: the late write must then change nothing.
"""

from __future__ import annotations

import asyncio

import asyncpg
from nats.js import JetStreamContext

from services.projector import store
from services.projector.app import Projector
from shared import bus, readmodel
from shared import events as ev
from shared.jobs import JobView, evolve
from shared.runtime import cancel_and_wait
from tests.projector.holding import Held, waiting_for_a_lock
from tests.support.events import spec
from tests.support.waiting import eventually


async def deleted_job(js: JetStreamContext) -> tuple[JobView, JobView, int]:
    """A job queued, run, cancelled while running and deleted: its first view, a later one, the last seq."""
    s = spec("check", repository_id="r1")
    queued = ev.JobQueued(job_id=s.id, data=s)
    first = evolve(None, queued, int((await bus.publish(js, queued)).seq))
    await bus.publish(js, ev.JobSent(job_id=s.id, data=ev.SentData(agent=s.agent)))
    await bus.publish(js, ev.JobStarted(job_id=s.id, data=ev.StartedData(agent=s.agent)))
    cancelled = ev.JobCancelled(job_id=s.id)
    seq = int((await bus.publish(js, cancelled)).seq)
    later = await bus.load_job(js, s.id)
    deleted = await bus.publish(js, ev.JobDeleted(job_id=s.id), expect_last_seq=seq)
    assert first is not None and later is not None and later.last_seq == seq
    return first, later, int(deleted.seq)


async def row(pool: asyncpg.Pool, job_id: str) -> object:
    async with pool.acquire() as conn:
        return await conn.fetchval("SELECT status FROM jobs WHERE id = $1", job_id)


async def test_a_late_write_after_the_deletion_changes_nothing(js: JetStreamContext, pool: asyncpg.Pool) -> None:
    first, later, last = await deleted_job(js)
    task = asyncio.create_task(Projector(pool, js).jobs())

    async def projected() -> bool:
        async with pool.acquire() as conn:
            return await readmodel.get_checkpoint(conn, store.JOBS) >= last

    try:
        await eventually(projected, what="the job's deletion projected")
    finally:
        await cancel_and_wait(task)
    async with pool.acquire() as conn:
        await readmodel.insert_new_job(conn, first)
        await readmodel.upsert_jobs(conn, [later])
    assert await row(pool, first.id) is None


async def test_a_write_during_the_batch_that_deletes_waits_for_it(js: JetStreamContext, pool: asyncpg.Pool) -> None:
    first, _, _ = await deleted_job(js)
    p = Held(pool, js)
    task = asyncio.create_task(p.jobs())
    try:
        await write_during_the_batch(p, pool, first)
    finally:
        p.release.set()
        await cancel_and_wait(task)
    assert await row(pool, first.id) is None


async def write_during_the_batch(p: Held, pool: asyncpg.Pool, first: JobView) -> None:
    """The api's insert of the job's first row, while the projector holds the batch that deletes it."""

    await eventually(p.held, what="the projector holding the job's life in one batch")

    async def insert() -> None:
        async with pool.acquire() as conn:
            await readmodel.insert_new_job(conn, first)

    api = asyncio.create_task(insert())

    async def waiting() -> bool:
        return await waiting_for_a_lock(pool, "%projected%")

    await eventually(waiting, what="the api's insert waiting for the projector's batch")
    p.release.set()
    await asyncio.wait_for(api, 10)

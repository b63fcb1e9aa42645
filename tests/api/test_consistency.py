"""`consistent=true`: a list answers only once the read model holds every job event before the request."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from services.api import consistency
from services.api.runtime import Runtime
from shared import bus, ids, readmodel
from shared.config import Settings
from shared.events import JobQueued, JobSpec
from tests.api.conftest import Client


async def _queue_unprojected(js: JetStreamContext) -> int:
    spec = JobSpec(id=ids.new_id(), type="ping", agent="local", created_at=datetime.now(UTC))
    return (await bus.publish(js, JobQueued(job_id=spec.id, data=spec))).seq


async def test_waiting_ends_when_the_projection_reaches_the_stream(
    settings: Settings, pool: asyncpg.Pool, nc: NATS, js: JetStreamContext
) -> None:
    rt = Runtime(settings=settings, pool=pool, nc=nc, js=js)
    seq = await _queue_unprojected(js)
    waiter = asyncio.create_task(consistency.wait_for_projection(rt, timeout=30))
    done, _ = await asyncio.wait({waiter}, timeout=0.2)
    assert not done  # the projection is behind: it waits
    async with pool.acquire() as conn:
        await readmodel.set_checkpoint(conn, "jobs", seq)
    assert await asyncio.wait_for(waiter, 10) is True
    assert await consistency.wait_for_projection(rt, timeout=0) is True  # caught up: at once
    await _queue_unprojected(js)
    assert await consistency.wait_for_projection(rt, timeout=0.05) is False  # gives up, says so


async def test_without_a_projector_a_consistent_list_still_answers(client: Client, js: JetStreamContext) -> None:
    await _queue_unprojected(js)
    for path in ("/api/queue?consistent=true", "/api/jobs?consistent=true"):
        assert (await client.get(path)).status_code == 200

"""The projector folds BORGFLOW_JOBS into Postgres: idempotent, replayable, unshaken by bad events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest_asyncio
from nats.js import JetStreamContext

from services.projector.app import run
from shared import bus, readmodel
from shared import events as ev
from shared.config import Settings
from shared.testing import NatsServer
from tests.support.events import run_history, spec
from tests.support.waiting import eventually

TABLES = {
    "jobs": "SELECT id, status, agent, last_seq, doc FROM jobs ORDER BY id",
    "archives": "SELECT repository_id, name, job_id, stats FROM archives ORDER BY 1, 2",
    "job_progress": "SELECT job_id, seq, progress FROM job_progress ORDER BY 1",
    "agents": "SELECT name, borg_version, running FROM agents ORDER BY 1",
}


async def snapshot(pool: asyncpg.Pool) -> dict[str, list[dict[str, Any]]]:
    async with pool.acquire() as conn:
        return {t: [dict(r) for r in await conn.fetch(q)] for t, q in TABLES.items()}


class Running:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def start(self, rebuild: bool = False) -> None:
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(run(self.settings, self.stop, rebuild_first=rebuild))

    async def halt(self) -> None:
        self.stop.set()
        assert self.task is not None
        await asyncio.wait_for(self.task, 10)


@pytest_asyncio.fixture(loop_scope="session")
async def projector(nats_server: NatsServer, database_url: str) -> AsyncIterator[Running]:
    r = Running(Settings(nats_url=nats_server.url, database_url=database_url))
    yield r
    if r.task and not r.task.done():
        await r.halt()


async def caught_up(pool: asyncpg.Pool, name: str, seq: int) -> None:
    async def check() -> bool:
        async with pool.acquire() as conn:
            return await readmodel.get_checkpoint(conn, name) >= seq

    await eventually(check, what=f"projection {name} at {seq}")


async def populate(js: JetStreamContext) -> int:
    """A few finished and unfinished jobs, progress and a heartbeat; returns the last job seq."""
    repo = ev.RepositoryRef(id="r1", name="repo-one", location="/tmp/r1", agent="a1")
    backup = spec("backup", repository_id="r1", repository=repo)
    done = ev.OutcomeData(result=ev.JobResult(exit_code=0, archive="plan-2026", stats={"nfiles": 3}))
    await run_history(js, backup, ev.JobCompleted(job_id=backup.id, data=done))
    failed = spec("check", repository_id="r1")
    err = ev.OutcomeData(error=ev.JobError(kind="lock_timeout", message="lock", exit_code=73))
    await run_history(js, failed, ev.JobFailed(job_id=failed.id, data=err))
    running = spec("backup", agent="a2")
    await bus.publish(js, ev.JobQueued(job_id=running.id, data=running))
    await bus.publish(js, ev.JobSent(job_id=running.id, data=ev.SentData(agent="a2")))
    await bus.publish(js, ev.JobStarted(job_id=running.id, data=ev.StartedData(agent="a2")))
    await bus.publish(js, ev.JobProgress(job_id=running.id, data=ev.Progress(percent=42.0, nfiles=7)))
    # Applies from any active state: only the last_seq guard keeps a replay of it harmless.
    await bus.publish(js, ev.JobCancelRequested(job_id=running.id))
    await bus.publish(js, ev.AgentHeartbeat(data=ev.HeartbeatData(agent="a2", borg_version="1.4.5")))
    queued = spec("prune", repository_id="r1", options={"keep_daily": 7})
    ack = await bus.publish(js, ev.JobQueued(job_id=queued.id, data=queued))
    return int(ack.seq)


async def test_projection_reflects_the_stream(projector: Running, js: JetStreamContext, pool: asyncpg.Pool) -> None:
    last = await populate(js)
    projector.start()
    await caught_up(pool, "jobs", last)
    await caught_up(pool, "agents", 1)
    snap = await snapshot(pool)
    statuses = sorted(r["status"] for r in snap["jobs"])
    assert statuses == ["completed", "failed", "queued", "running"]
    assert [(a["name"], a["job_id"] is not None) for a in snap["archives"]] == [("plan-2026", True)]
    assert snap["job_progress"][0]["progress"]["percent"] == 42.0
    assert snap["agents"][0]["borg_version"] == "1.4.5"


async def test_redelivered_events_change_nothing(projector: Running, js: JetStreamContext, pool: asyncpg.Pool) -> None:
    last = await populate(js)
    projector.start()
    await caught_up(pool, "jobs", last)
    before = await snapshot(pool)
    await projector.halt()
    # Rewind every position to the start: each event is delivered and applied again.
    async with pool.acquire() as conn:
        await conn.execute("UPDATE projection_checkpoints SET seq = 0")
    projector.start()
    await caught_up(pool, "jobs", last)
    await caught_up(pool, "progress", 1)
    assert await snapshot(pool) == before


async def test_rebuild_equals_live(projector: Running, js: JetStreamContext, pool: asyncpg.Pool) -> None:
    projector.start()
    last = await populate(js)
    await caught_up(pool, "jobs", last)
    await caught_up(pool, "agents", 1)
    live = await snapshot(pool)
    await projector.halt()
    projector.start(rebuild=True)
    await caught_up(pool, "jobs", last)
    await caught_up(pool, "agents", 1)
    assert await snapshot(pool) == live


async def test_bad_events_are_skipped(projector: Running, js: JetStreamContext, pool: asyncpg.Pool) -> None:
    projector.start()
    job = spec("compact", repository_id="r1")
    await bus.publish(js, ev.JobQueued(job_id=job.id, data=job))
    await js.publish(f"borgflow.jobs.{job.id}.started", b"{not json")
    await js.publish(f"borgflow.jobs.{job.id}.failed", b'{"type":"job.exploded","id":"x","at":"2026-01-01T00:00:00Z"}')
    # A transition from the wrong state: completed while only queued.
    await bus.publish(js, ev.JobCompleted(job_id=job.id))
    ack = await bus.publish(js, ev.JobSent(job_id=job.id, data=ev.SentData(agent="a1")))
    await caught_up(pool, "jobs", int(ack.seq))
    async with pool.acquire() as conn:
        status = await conn.fetchval("SELECT status FROM jobs WHERE id = $1", job.id)
    assert status == "sent"

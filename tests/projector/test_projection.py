"""The projector folds BORGFLOW_JOBS into Postgres: idempotent, replayable, unshaken by bad events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
import pytest_asyncio
from nats.js import JetStreamContext

from services.projector.app import run
from shared import bus, readmodel
from shared import events as ev
from shared.config import Settings
from shared.jobs import evolve
from shared.testing import NatsServer
from tests.support.events import run_history, spec
from tests.support.waiting import eventually

TABLES = {
    "jobs": "SELECT id, status, agent, last_seq, doc FROM jobs ORDER BY id",
    "archives": "SELECT repository_id, name, job_id, stats FROM archives ORDER BY 1, 2",
    "verifications": "SELECT repository_id, archive, result, verified_at, job_id, detail FROM verifications"
    " ORDER BY 1, 2",
    "job_progress": "SELECT job_id, seq, progress FROM job_progress ORDER BY 1",
    "repository_stats": "SELECT repository_id, at, job_id, figures FROM repository_stats ORDER BY 1",
    "repository_stats_days": "SELECT repository_id, day, at, figures FROM repository_stats_days ORDER BY 1, 2",
    "agents": "SELECT name, borg_version, running FROM agents ORDER BY 1",
    "job_status_counts": "SELECT project, status, n FROM job_status_counts WHERE n <> 0 ORDER BY 1, 2",
    "job_finish_counts": "SELECT project, minute, status, n FROM job_finish_counts WHERE n <> 0 ORDER BY 1, 2, 3",
}
COUNTED = {
    "job_status_counts": "SELECT project, status, count(*) AS n FROM jobs GROUP BY 1, 2 ORDER BY 1, 2",
    "job_finish_counts": "SELECT project, date_trunc('minute', finished_at) AS minute, status, count(*) AS n"
    " FROM jobs WHERE finished_at IS NOT NULL GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
}


async def counters_match(pool: asyncpg.Pool) -> None:
    """The counters the jobs table keeps (migration 0005) equal counting its rows."""
    snap = await snapshot(pool)
    async with pool.acquire() as conn:
        for table, query in COUNTED.items():
            assert snap[table] == [dict(r) for r in await conn.fetch(query)], table


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
    measured = {"repository": {"archives": 1, "original_size": 30, "deduplicated_size": 12, "disk_used": 500}}
    result = ev.JobResult(exit_code=0, archive="plan-2026", stats={"nfiles": 3}, details=measured)
    done = ev.OutcomeData(result=result)
    await run_history(js, backup, ev.JobCompleted(job_id=backup.id, data=done))
    # The next backup did not list the archives: it added one to the count the read model held.
    counted = msgspec.structs.replace(repo, archives_counted=True)
    again = spec("backup", repository_id="r1", repository=counted)
    added = {"repository": {"archives_added": 1, "original_size": 60, "deduplicated_size": 14, "disk_used": 510}}
    result = ev.JobResult(exit_code=0, archive="plan-2027", stats={"nfiles": 3}, details=added)
    await run_history(js, again, ev.JobCompleted(job_id=again.id, data=ev.OutcomeData(result=result)))
    failed = spec("check", repository_id="r1")
    err = ev.OutcomeData(error=ev.JobError(kind="lock_timeout", message="lock", exit_code=73))
    await run_history(js, failed, ev.JobFailed(job_id=failed.id, data=err))
    damaged = spec("check", repository_id="r1", repository=repo)
    verdicts = [
        {"archive": "plan-2026", "result": "CORRUPT", "detail": "data errors in 1 file: a"},
        {"archive": "made-elsewhere", "result": "OK", "detail": ""},
    ]
    found = ev.JobError(kind="integrity", message="borg check found damage")
    result = ev.JobResult(exit_code=1, details={"verification": verdicts})
    await run_history(js, damaged, ev.JobFailed(job_id=damaged.id, data=ev.OutcomeData(error=found, result=result)))
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
    assert statuses == ["completed", "completed", "failed", "failed", "queued", "running"]
    assert [(a["name"], a["job_id"] is not None) for a in snap["archives"]] == [
        ("plan-2026", True),
        ("plan-2027", True),
    ]
    assert [(v["archive"], v["result"]) for v in snap["verifications"]] == [
        ("made-elsewhere", "OK"),
        ("plan-2026", "CORRUPT"),
    ]
    assert snap["job_progress"][0]["progress"]["percent"] == 42.0
    assert [(r["figures"]["deduplicated_size"], r["figures"]["archives"]) for r in snap["repository_stats"]] == [
        (14, 2)
    ]
    assert "archives_added" not in snap["repository_stats"][0]["figures"]
    assert len(snap["repository_stats_days"]) == 1
    assert snap["agents"][0]["borg_version"] == "1.4.5"
    await counters_match(pool)


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
    # A row no event makes: its going shows the rebuild has emptied the read model, so the
    # checkpoints waited on below are the rebuild's, not the live run's still standing.
    async with pool.acquire() as conn:
        await conn.execute("INSERT INTO agents (name, last_seen) VALUES ('rebuild-marker', now())")
    projector.start(rebuild=True)

    async def emptied() -> bool:
        async with pool.acquire() as conn:
            return not await conn.fetchval("SELECT count(*) FROM agents WHERE name = 'rebuild-marker'")

    await eventually(emptied, what="the rebuild emptying the read model")
    await caught_up(pool, "jobs", last)
    await caught_up(pool, "agents", 1)
    assert await snapshot(pool) == live
    await counters_match(pool)


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


async def test_counters_follow_every_writer(projector: Running, js: JetStreamContext, pool: asyncpg.Pool) -> None:
    """The projector's batches, a deletion, and a row written by another writer all keep the counts."""
    projector.start()
    last = await populate(js)
    await caught_up(pool, "jobs", last)
    done = spec("check", repository_id="r1")
    seq = await run_history(js, done)
    deleted = await bus.publish(js, ev.JobDeleted(job_id=done.id), expect_last_seq=seq)
    await caught_up(pool, "jobs", int(deleted.seq))
    await counters_match(pool)
    await projector.halt()  # the api's first row of a new job, before the projector's
    extra = spec("ping", agent="a3")
    queued = ev.JobQueued(job_id=extra.id, data=extra)
    view = evolve(None, queued, int((await bus.publish(js, queued)).seq))
    assert view is not None
    async with pool.acquire() as conn:
        await readmodel.insert_new_job(conn, view)
        assert await conn.fetchval("SELECT status FROM jobs WHERE id = $1", extra.id) == "queued"
    await counters_match(pool)

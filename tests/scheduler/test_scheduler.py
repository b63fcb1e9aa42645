"""The scheduler queues a job at its fire time, once, with an injected clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import cast

import asyncpg
from nats.js import JetStreamContext

from services.scheduler.app import fire_job_id, run
from shared import bus
from shared import events as ev
from shared.config import Settings
from tests.scheduler.conftest import T0
from tests.scheduler.helpers import FakeClock, Running, add_schedule, last_fire_at, queued_for, schedule_events
from tests.support.config import add_plan, add_repository
from tests.support.waiting import eventually

PING = {"type": "ping", "agent": "local"}


async def test_a_schedule_queues_a_backup_at_its_time_once(
    running: Running, settings: Settings, clock: FakeClock, js: JetStreamContext, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        repo = await add_repository(cast(asyncpg.Connection, conn), "/tmp/nowhere")
        plan = await add_plan(cast(asyncpg.Connection, conn), repo, ["/etc"], queue_behavior="queue")
        sid = await add_schedule(
            conn, {"type": "backup", "plan_id": plan}, "*/5 * * * *", created_at=T0 - timedelta(seconds=30)
        )
    # Two scheduler instances: one fire time must still be one job.
    for _ in range(2):
        running.start(lambda stop: run(settings, stop, clock=clock))
    fire = datetime(2026, 11, 23, 10, 5, tzinfo=UTC)
    await clock.set(fire + timedelta(seconds=1))

    jobs = await eventually(lambda: queued_for(js, sid), what="the scheduled job")
    job = jobs[0]
    assert job.id == fire_job_id(sid, fire) and job.trigger == "schedule" and job.type == "backup"
    assert job.plan_id == plan and job.created_at == fire + timedelta(seconds=1)

    async def recorded() -> bool:
        return await last_fire_at(pool, sid) == fire

    await eventually(recorded, what="last_fire_at recorded")
    assert len(await queued_for(js, sid)) == 1


async def test_a_restart_at_the_fire_time_queues_one_job(
    running: Running, settings: Settings, clock: FakeClock, js: JetStreamContext, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        sid = await add_schedule(conn, PING, "*/5 * * * *", created_at=T0 - timedelta(seconds=30))
    fire = datetime(2026, 11, 23, 10, 5, tzinfo=UTC)
    appended = asyncio.Event()

    async def crash_here(job_id: str) -> None:
        appended.set()
        await asyncio.Event().wait()  # the test kills the scheduler while it waits here

    first = running.start(lambda stop: run(settings, stop, clock=clock, on_queued=crash_here))
    await clock.set(fire + timedelta(seconds=1))
    await asyncio.wait_for(appended.wait(), 10)
    await running.kill(*first)
    job_id = fire_job_id(sid, fire)
    # Killed after the append, before it recorded the fire: the schedule does not know it fired.
    assert await last_fire_at(pool, sid) is None
    assert await bus.last_job_seq(js, job_id) > 0
    async with pool.acquire() as conn:  # and as if the crash had also lost the read model's row
        await conn.execute("DELETE FROM jobs WHERE id = $1", job_id)

    running.start(lambda stop: run(settings, stop, clock=clock))

    async def recorded() -> bool:
        return await last_fire_at(pool, sid) == fire

    await eventually(recorded, what="the restarted scheduler to record the fire")
    assert [j.id for j in await queued_for(js, sid)] == [job_id]
    assert len(await schedule_events(js, sid, ev.ScheduleFired)) == 1
    assert await schedule_events(js, sid, ev.ScheduleMissed) == []


async def test_downtime_runs_once_and_reports_the_missed(
    running: Running, settings: Settings, clock: FakeClock, js: JetStreamContext, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        sid = await add_schedule(
            conn,
            PING,
            "0 * * * *",
            created_at=T0 - timedelta(days=1),
            last_fire_at=datetime(2026, 11, 23, 7, tzinfo=UTC),
        )
    running.start(lambda stop: run(settings, stop, clock=clock))

    jobs = await eventually(lambda: queued_for(js, sid), what="the catch-up run")
    assert [j.id for j in jobs] == [fire_job_id(sid, datetime(2026, 11, 23, 10, tzinfo=UTC))]
    missed = await eventually(lambda: schedule_events(js, sid, ev.ScheduleMissed), what="the missed report")
    assert len(missed) == 1 and "2 fire time(s)" in (missed[0].data.reason or "")
    assert missed[0].data.fire_at == datetime(2026, 11, 23, 9, tzinfo=UTC)


async def test_downtime_past_the_window_is_one_missed_report_and_no_run(
    running: Running, settings: Settings, clock: FakeClock, js: JetStreamContext, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        sid = await add_schedule(
            conn,
            PING,
            "0 * * * *",
            created_at=T0 - timedelta(days=3),
            last_fire_at=T0 - timedelta(days=1, seconds=30),
            catch_up_s=60,
        )
    await clock.set(T0 + timedelta(minutes=10))  # the 10:00 fire is 10.5 min old: outside the window
    running.start(lambda stop: run(settings, stop, clock=clock))

    missed = await eventually(lambda: schedule_events(js, sid, ev.ScheduleMissed), what="the missed report")
    assert missed[0].data.fire_at == datetime(2026, 11, 23, 10, tzinfo=UTC)
    assert "24 fire time(s)" in (missed[0].data.reason or "")
    assert await queued_for(js, sid) == []
    # Time goes on: the next fire time runs normally, and nothing more is reported missed.
    await clock.set(datetime(2026, 11, 23, 11, 0, 1, tzinfo=UTC))
    jobs = await eventually(lambda: queued_for(js, sid), what="the next fire")
    assert [j.id for j in jobs] == [fire_job_id(sid, datetime(2026, 11, 23, 11, tzinfo=UTC))]
    assert len(await schedule_events(js, sid, ev.ScheduleMissed)) == 1


async def test_an_interval_schedule_fires_at_creation_plus_whole_intervals(
    running: Running, settings: Settings, clock: FakeClock, js: JetStreamContext, pool: asyncpg.Pool
) -> None:
    created = T0 - timedelta(minutes=30)
    async with pool.acquire() as conn:
        sid = await add_schedule(conn, PING, created_at=created, interval_s=3600)
    running.start(lambda stop: run(settings, stop, clock=clock))
    for k in (1, 2):
        await clock.set(created + k * timedelta(hours=1) + timedelta(seconds=2))

        async def fired(k: int = k) -> list[ev.JobSpec] | None:
            jobs = await queued_for(js, sid)
            return jobs if len(jobs) >= k else None

        await eventually(fired, what=f"fire {k}")
    jobs = await queued_for(js, sid)
    assert [j.id for j in jobs] == [fire_job_id(sid, created + k * timedelta(hours=1)) for k in (1, 2)]


async def test_switching_a_schedule_back_on_does_not_catch_up(
    running: Running, settings: Settings, js: JetStreamContext, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        sid = await add_schedule(
            conn,
            PING,
            "* * * * *",
            created_at=T0 - timedelta(days=1),
            last_fire_at=T0 - timedelta(hours=3),
            enabled=False,
        )
        await conn.execute("UPDATE schedules SET enabled = true WHERE id = $1", sid)
        # The database stamps the switch-on with its own clock: the scheduler's starts there.
        now: datetime = await conn.fetchval("SELECT active_since FROM schedules WHERE id = $1", sid)
    clock = FakeClock(now)
    running.start(lambda stop: run(settings, stop, clock=clock))
    nxt = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    await clock.set(nxt + timedelta(seconds=1))
    jobs = await eventually(lambda: queued_for(js, sid), what="the first fire after switching on")
    # Neither the fire times while it was off ran, nor were they reported missed.
    assert [j.id for j in jobs] == [fire_job_id(sid, nxt)]
    assert await schedule_events(js, sid, ev.ScheduleMissed) == []


async def test_a_schedule_added_while_the_scheduler_sleeps_takes_effect_at_once(
    running: Running, settings: Settings, clock: FakeClock, js: JetStreamContext, pool: asyncpg.Pool
) -> None:
    minute = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # 30 s before T0: due at once
    async with pool.acquire() as conn:
        first = await add_schedule(conn, PING, "* * * * *", created_at=T0 - timedelta(minutes=10))
    running.start(lambda stop: run(settings, stop, clock=clock))
    await eventually(lambda: queued_for(js, first), what="the first schedule's fire")
    # The scheduler now sleeps until its clock moves, and the clock stands still: only the
    # change notification can wake it.
    async with pool.acquire() as conn:
        second = await add_schedule(conn, PING, "* * * * *", created_at=T0 - timedelta(minutes=10), name="added")
    jobs = await eventually(lambda: queued_for(js, second), what="the added schedule's fire")
    assert [j.id for j in jobs] == [fire_job_id(second, minute)]

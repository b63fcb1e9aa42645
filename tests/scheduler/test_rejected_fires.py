"""A fire time whose job the queue rules refuse, or that can no longer be built, is a reported schedule failure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import cast

import asyncpg
from nats.js import JetStreamContext

from services.scheduler.app import run
from shared import events as ev
from shared.config import Settings
from shared.submit import JobRequest, submit
from tests.scheduler.conftest import T0
from tests.scheduler.helpers import FakeClock, Running, add_schedule, last_fire_at, queued_for, schedule_events
from tests.support.config import add_plan, add_repository
from tests.support.waiting import eventually

FIRE = datetime(2026, 11, 23, 10, 5, tzinfo=UTC)


async def test_refused_and_impossible_fires_are_reported_missed_with_the_reason(
    running: Running, settings: Settings, clock: FakeClock, js: JetStreamContext, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as c:
        conn = cast(asyncpg.Connection, c)
        repo = await add_repository(conn, "/srv/r")
        cancel = await add_plan(conn, repo, ["/etc"], name="web", queue_behavior="cancel")
        full = await add_plan(conn, repo, ["/var"], name="db", queue_behavior="queue", max_queue_depth=1)
        # A backup of each plan already waits (a person started them): for "db" that fills its queue.
        for plan in (cancel, full):
            await submit(conn, js, JobRequest(type="backup", plan_id=plan))
        schedules = {
            "behaviour": await add_schedule(
                conn, {"type": "backup", "plan_id": cancel}, "*/5 * * * *", created_at=T0, name="web nightly"
            ),
            "full": await add_schedule(
                conn, {"type": "backup", "plan_id": full}, "*/5 * * * *", created_at=T0, name="db nightly"
            ),
            "gone": await add_schedule(
                conn, {"type": "backup", "plan_id": "01deletedplan0000000000000"}, "*/5 * * * *", created_at=T0
            ),
        }
    running.start(lambda stop: run(settings, stop, clock=clock))
    await clock.set(FIRE + timedelta(seconds=1))

    reasons = {}
    for what, sid in schedules.items():

        async def reported(sid: str = sid) -> list[ev.ScheduleMissed]:
            return await schedule_events(js, sid, ev.ScheduleMissed)

        missed = await eventually(reported, what=f"{what} missed")
        assert len(missed) == 1 and missed[0].data.fire_at == FIRE
        reasons[what] = missed[0].data.reason or ""
        assert await queued_for(js, sid) == []
        assert await schedule_events(js, sid, ev.ScheduleFired) == []
    assert "queue_behavior is 'cancel'" in reasons["behaviour"] and "web" in reasons["behaviour"]
    assert "queue full" in reasons["full"]
    assert "no plan with id" in reasons["gone"]
    assert all(r.startswith("the scheduled backup was not queued: ") for r in reasons.values())

    # Handled: the fire time is recorded, so it is neither retried nor reported again.
    async def recorded() -> bool:
        return all([await last_fire_at(pool, sid) == FIRE for sid in schedules.values()])

    await eventually(recorded, what="the fire times recorded")
    await clock.set(FIRE + timedelta(minutes=2))
    await clock.set(FIRE + timedelta(minutes=5, seconds=1))  # the next fire time: refused again, reported again

    async def twice() -> bool:
        return len(await schedule_events(js, schedules["behaviour"], ev.ScheduleMissed)) == 2

    await eventually(twice, what="the next refusal reported")

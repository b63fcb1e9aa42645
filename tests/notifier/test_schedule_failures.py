"""A scheduled job the queue rules refuse reaches people: scheduler and notifier together."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import cast

import asyncpg
from nats.js import JetStreamContext

from services.scheduler.app import run as scheduler
from shared.config import Settings
from shared.submit import JobRequest, submit
from tests.notifier.conftest import Receiver, StartNotifier, add_target
from tests.scheduler.helpers import FakeClock, Running, add_schedule
from tests.support.config import add_plan, add_repository
from tests.support.waiting import eventually


async def test_a_refused_scheduled_backup_is_notified_with_the_reason(
    start_notifier: StartNotifier,
    running: Running,
    settings: Settings,
    receivers: Callable[[], Receiver],
    js: JetStreamContext,
    pool: asyncpg.Pool,
) -> None:
    receiver = receivers()
    await add_target(pool, receiver.url, [])  # the defaults: failures, warnings, missed schedules, ...
    t0 = datetime(2026, 11, 23, 2, 59, 30, tzinfo=UTC)
    async with pool.acquire() as c:
        conn = cast(asyncpg.Connection, c)
        repo = await add_repository(conn, "/srv/r")
        plan = await add_plan(conn, repo, ["/etc"], name="web", queue_behavior="cancel")
        await submit(conn, js, JobRequest(type="backup", plan_id=plan))  # still waiting at 03:00
        await add_schedule(conn, {"type": "backup", "plan_id": plan}, "0 3 * * *", created_at=t0, name="web nightly")
    await start_notifier()
    clock = FakeClock(t0)
    running.start(lambda stop: scheduler(settings, stop, clock=clock))
    await clock.set(t0 + timedelta(seconds=31))

    async def told() -> bool:
        return len(receiver.bodies) >= 1

    await eventually(told, what="the missed schedule notified")
    body = receiver.bodies[0]
    assert body["title"] == "borgflow: schedule web nightly missed a run"
    assert "Fire time: 2026-11-23 03:00:00 UTC" in body["message"]
    assert "queue_behavior is 'cancel'" in body["message"]

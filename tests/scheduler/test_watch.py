"""The active scheduler's clock-driven duties: stale scheduled checks fail, overdue plans are raised once."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime, timedelta
from typing import cast

import asyncpg
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from services.dispatcher.app import run as dispatcher
from services.projector.app import run as projector
from services.scheduler.app import run
from shared import bus, waiting
from shared import events as ev
from shared.config import Settings
from shared.events import JobStatus
from tests.scheduler.conftest import T0
from tests.scheduler.helpers import FakeClock, Running, backup_history, stream_events
from tests.support.config import add_plan, add_repository
from tests.support.events import spec
from tests.support.waiting import eventually

MIN = timedelta(minutes=1)


def repo(name: str) -> ev.RepositoryRef:
    return ev.RepositoryRef(id=f"r-{name}", name=name, location=f"/srv/{name}", agent="a1")


def check(where: ev.RepositoryRef, queued_at: datetime, trigger: str = "schedule") -> ev.JobSpec:
    return spec(
        "check",
        agent=where.agent,
        repository_id=where.id,
        repository=where,
        trigger=trigger,
        created_at=queued_at,
        schedule_id="s1",
    )


async def reason(nc: NATS, job_id: str) -> str | None:
    """Why the dispatcher says a queued job waits (None: it has not said yet)."""
    w = (await waiting.ask(nc, [job_id])).get(job_id)
    return None if w is None else w.reason


async def failed(js: JetStreamContext, job_id: str) -> ev.JobError | None:
    view = await bus.load_job(js, job_id)
    return view.error if view is not None and view.status == JobStatus.FAILED else None


async def projected(pool: asyncpg.Pool, *jobs: tuple[str, JobStatus]) -> bool:
    """Whether the read model shows each (job, status)."""
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT id, status FROM jobs WHERE id = ANY($1::text[])", [j for j, _ in jobs])
    return {(r["id"], r["status"]) for r in rows} == {(j, str(s)) for j, s in jobs}


async def status(js: JetStreamContext, job_id: str) -> JobStatus | None:
    view = await bus.load_job(js, job_id)
    return None if view is None else view.status


async def test_a_scheduled_check_that_never_starts_is_failed_after_15_minutes(
    running: Running, settings: Settings, clock: FakeClock, js: JetStreamContext, nc: NATS, pool: asyncpg.Pool
) -> None:
    idle, busy = repo("idle"), repo("busy")
    stale = check(idle, T0 - 20 * MIN)
    behind_running = check(busy, T0 - 20 * MIN)
    manual = check(repo("manual"), T0 - 20 * MIN, trigger="manual")
    young = check(repo("young"), T0 - 10 * MIN)
    for s in (stale, behind_running, manual, young):
        await bus.publish(js, ev.JobQueued(job_id=s.id, data=s, at=s.created_at))
    running_backup = spec("backup", repository_id=busy.id, repository=busy)
    await backup_history(js, running_backup, None, T0)
    running.start(lambda stop: projector(settings, stop))
    queued = [(s.id, JobStatus.QUEUED) for s in (stale, behind_running, manual, young)]
    await eventually(lambda: projected(pool, *queued, (running_backup.id, JobStatus.RUNNING)), what="the read model")
    # Agent a1 never sent a heartbeat: the dispatcher says the checks wait for it to come back.
    running.start(lambda stop: dispatcher(settings, stop))
    await eventually(lambda: _is(reason(nc, stale.id), "agent_offline"), what="the dispatcher's word")

    running.start(lambda stop: run(settings, stop, clock=clock))

    error = await eventually(lambda: failed(js, stale.id), what="the stale check failed")
    assert error is not None and error.kind == "stalled" and "waited 15 min without starting" in error.message
    for other in (behind_running, manual, young):
        assert await status(js, other.id) == JobStatus.QUEUED
    # Six minutes later the young one has waited 16: the clock alone makes it stale.
    await clock.advance(6 * MIN)
    await eventually(lambda: failed(js, young.id), what="the second check failed")
    assert await status(js, behind_running.id) == JobStatus.QUEUED


async def test_a_scheduled_check_waiting_behind_another_repositorys_backup_on_a_busy_agent_is_not_failed(
    running: Running, settings: Settings, clock: FakeClock, js: JetStreamContext, nc: NATS, pool: asyncpg.Pool
) -> None:
    # Agent a1 is online, its one slot taken by a long backup of another repository.
    await bus.publish(js, ev.AgentHeartbeat(data=ev.HeartbeatData(agent="a1", interval_s=3600)))
    long_backup = spec("backup", repository_id="r-other", repository=repo("other"))
    await backup_history(js, long_backup, None, ev.utcnow())
    behind = check(repo("mine"), T0 - 20 * MIN)
    # A second check, queued after it, whose agent is offline: once it is failed, the
    # same round has judged the first.
    away = check(ev.RepositoryRef(id="r-far", name="far", location="/srv/far", agent="a2"), T0 - 19 * MIN)
    for s in (behind, away):
        await bus.publish(js, ev.JobQueued(job_id=s.id, data=s, at=s.created_at))
    running.start(lambda stop: projector(settings, stop))
    queued = [(s.id, JobStatus.QUEUED) for s in (behind, away)]
    await eventually(lambda: projected(pool, *queued, (long_backup.id, JobStatus.RUNNING)), what="the read model")
    running.start(lambda stop: dispatcher(settings, stop))
    await eventually(lambda: _is(reason(nc, behind.id), "agent_busy"), what="the check waiting for the busy agent")
    await eventually(lambda: _is(reason(nc, away.id), "agent_offline"), what="the other waiting for its agent")

    running.start(lambda stop: run(settings, stop, clock=clock))

    error = await eventually(lambda: failed(js, away.id), what="the check whose agent is away failed")
    assert await status(js, behind.id) == JobStatus.QUEUED
    assert await reason(nc, behind.id) == "agent_busy"
    assert error.message.endswith("(agent a2 is offline)")


async def _is(value: Awaitable[object], want: object) -> bool:
    return await value == want


async def overdue_events(js: JetStreamContext, plan_id: str) -> list[ev.PlanOverdue]:
    return [
        e
        for e in await stream_events(js, "BORGFLOW_PLANS")
        if isinstance(e, ev.PlanOverdue) and e.data.plan_id == plan_id
    ]


async def test_an_overdue_plan_is_raised_once_until_a_backup_succeeds(
    running: Running, settings: Settings, clock: FakeClock, js: JetStreamContext, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as c:
        conn = cast(asyncpg.Connection, c)
        r = await add_repository(conn, "/srv/r")
        never = await add_plan(conn, r, ["/etc"], name="never", alert_after_s=3600)
        fresh = await add_plan(conn, r, ["/etc"], name="fresh", alert_after_s=3600)
        unguarded = await add_plan(conn, r, ["/etc"], name="unguarded")
        await conn.execute("UPDATE plans SET created_at = $1", T0 - timedelta(hours=5))
        plans = {p: ev.PlanRef(id=p, name=n, repository_id=r) for p, n in ((fresh, "fresh"), (never, "never"))}
    success = spec("backup", plan_id=fresh, plan=plans[fresh])
    await backup_history(js, success, ev.JobCompleted, T0 - 30 * MIN)
    running.start(lambda stop: projector(settings, stop))
    await eventually(lambda: projected(pool, (success.id, JobStatus.COMPLETED)), what="the read model")

    running.start(lambda stop: run(settings, stop, clock=clock))
    raised = await eventually(lambda: overdue_events(js, never), what="the never-succeeded plan overdue")
    assert raised[0].data.last_success_at is None and raised[0].data.name == "never"
    assert await overdue_events(js, fresh) == []

    # 31 minutes on, the fresh plan's last success is over an hour old: its turn. The first
    # one is not raised again: it is still overdue about the same (absent) success.
    await clock.advance(31 * MIN)
    late = await eventually(lambda: overdue_events(js, fresh), what="the fresh plan overdue")
    assert late[0].data.last_success_at == T0 - 30 * MIN and late[0].data.job_id == success.id
    await clock.advance(2 * 60 * MIN)

    # A success, then another hour and a half with none: raised again, about the new success.
    again = spec("backup", plan_id=fresh, plan=plans[fresh])
    await backup_history(js, again, ev.JobWarning, clock.now())
    await eventually(lambda: projected(pool, (again.id, JobStatus.WARNING)), what="the second success")
    await clock.advance(90 * MIN)

    async def second() -> bool:
        return len(await overdue_events(js, fresh)) == 2

    await eventually(second, what="the plan overdue again")
    assert (await overdue_events(js, fresh))[1].data.job_id == again.id
    # Every round since (each one a chance to repeat itself) left the others alone.
    assert len(await overdue_events(js, never)) == 1
    assert await overdue_events(js, unguarded) == []

"""Events beyond jobs: missed schedules, offline agents, overdue plans, low storage, and recoveries."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
from nats.js import JetStreamContext

from shared import bus, ids
from shared import events as ev
from tests.notifier.conftest import PAGE_URL, Receiver, StartNotifier, add_target, ledger
from tests.scheduler.helpers import stream_events
from tests.support.events import run_history, spec
from tests.support.waiting import eventually

REPO = ev.RepositoryRef(id="r1", name="offsite", location="/srv/offsite", agent="a1")


def plan(name: str = "web") -> ev.PlanRef:
    return ev.PlanRef(id=ids.new_id(), name=name, repository_id=REPO.id)


def backup(p: ev.PlanRef) -> ev.JobSpec:
    return spec("backup", plan=p, plan_id=p.id, repository=REPO, repository_id=REPO.id)


async def finished(js: JetStreamContext, pool: asyncpg.Pool, job: ev.JobSpec, outcome: ev.Outcome) -> None:
    """Run a job to `outcome` and wait until the read model shows it (as the next one will need)."""
    await run_history(js, job, outcome)

    async def projected() -> bool:
        async with pool.acquire() as conn:
            status = await conn.fetchval("SELECT status FROM jobs WHERE id = $1", job.id)
        return bool(status == outcome.type.removeprefix("job."))

    await eventually(projected, what=f"{job.id} projected")


async def recoveries(js: JetStreamContext, plan_id: str) -> list[ev.PlanRecovered]:
    events = await stream_events(js, "BORGFLOW_PLANS")
    return [e for e in events if isinstance(e, ev.PlanRecovered) and e.data.plan_id == plan_id]


async def count(r: Receiver, n: int) -> bool:
    return len(r.bodies) >= n


async def test_missed_schedules_offline_agents_and_overdue_plans_are_notified(
    start_notifier: StartNotifier, receivers: Callable[[], Receiver], js: JetStreamContext, pool: asyncpg.Pool
) -> None:
    defaults, backups_only, schedules_only = receivers(), receivers(), receivers()
    await add_target(pool, defaults.url, [], name="defaults")
    await add_target(pool, backups_only.url, ["backup.*"], name="backups")
    await add_target(pool, schedules_only.url, ["schedule.missed"], name="schedules")
    sid = ids.new_id()
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO schedules (id, name, cron, job) VALUES ($1, 'web nightly', '0 3 * * *', '{}')", sid
        )
    await start_notifier()
    fire = datetime(2026, 11, 23, 3, tzinfo=UTC)
    reason = "the scheduled backup was not queued: queue full: plan 'web' already has 3 backups waiting"
    await bus.publish(
        js,
        ev.ScheduleMissed(data=ev.ScheduleFireData(schedule_id=sid, name="web nightly", fire_at=fire, reason=reason)),
    )
    seen = datetime(2026, 11, 23, 16, 20, 5, tzinfo=UTC)
    await bus.publish(js, ev.AgentOffline(data=ev.AgentStateData(agent="web-1", last_seen=seen)))
    p = plan()
    detail = "no backup of plan web succeeded for 1 d (last success: never)"
    await bus.publish(js, ev.PlanOverdue(data=ev.PlanStateData(plan_id=p.id, name="web", detail=detail)))
    low = ev.StorageData(repository_id=REPO.id, name=REPO.name, free_percent=3.5, threshold_percent=10)
    await bus.publish(js, ev.RepositoryStorageLow(data=low))

    await eventually(lambda: count(defaults, 4), what="the four events at the default target")
    by_title = {b["title"]: b["message"] for b in defaults.bodies}
    missed = by_title["borgflow: schedule web nightly missed a run"]
    assert "Fire time: 2026-11-23 03:00:00 UTC" in missed and f"Reason: {reason}" in missed
    offline = by_title["borgflow: agent web-1 is offline"]
    assert "Last seen: 2026-11-23 16:20:05 UTC" in offline and f"{PAGE_URL}/queue" in offline
    overdue = by_title["borgflow: plan web is overdue"]
    assert "Last success: never" in overdue and detail in overdue
    assert "3.5% free" in by_title["borgflow: repository offsite storage low"]
    await eventually(lambda: count(schedules_only, 1), what="the schedules-only target")
    assert schedules_only.titles() == ["borgflow: schedule web nightly missed a run"]
    assert backups_only.bodies == []


async def test_a_success_after_failures_is_a_recovery_once(
    start_notifier: StartNotifier, receivers: Callable[[], Receiver], js: JetStreamContext, pool: asyncpg.Pool
) -> None:
    receiver = receivers()
    target = await add_target(pool, receiver.url, ["backup.recovered"])
    await start_notifier()
    p = plan()
    error = ev.JobError(kind="connection", message="connection closed by remote host")
    for _ in range(2):
        bad = backup(p)
        await finished(js, pool, bad, ev.JobFailed(job_id=bad.id, data=ev.OutcomeData(error=error)))
    good = backup(p)
    await finished(js, pool, good, ev.JobCompleted(job_id=good.id))

    await eventually(lambda: count(receiver, 1), what="the recovery")
    body = receiver.bodies[0]
    assert body["title"] == "borgflow: plan web recovered"
    assert "The backup succeeded after 2 failed backups." in body["message"]
    assert f"{PAGE_URL}/queue/{good.id}" in body["message"]
    # A success after a success is no news.
    again = backup(p)
    await finished(js, pool, again, ev.JobWarning(job_id=again.id))
    later = backup(p)
    await finished(js, pool, later, ev.JobFailed(job_id=later.id, data=ev.OutcomeData(error=error)))
    fixed = backup(p)
    await finished(js, pool, fixed, ev.JobCompleted(job_id=fixed.id))
    await eventually(lambda: count(receiver, 2), what="the second recovery")
    assert [r.data.job_id for r in await recoveries(js, p.id)] == [good.id, fixed.id]
    assert [d["event_type"] for d in await ledger(pool, target)] == ["backup.recovered"] * 2


async def test_a_success_after_an_overdue_is_a_recovery_and_a_stale_overdue_is_not_sent(
    start_notifier: StartNotifier, receivers: Callable[[], Receiver], js: JetStreamContext, pool: asyncpg.Pool
) -> None:
    receiver = receivers()
    await add_target(pool, receiver.url, ["plan.overdue", "backup.recovered"])
    await start_notifier()
    late, quiet = plan("late"), plan("quiet")
    # `quiet` succeeded a moment before a scheduler reading a lagging read model called it overdue.
    ok = backup(quiet)
    await finished(js, pool, ok, ev.JobCompleted(job_id=ok.id))
    await bus.publish(js, ev.PlanOverdue(data=ev.PlanStateData(plan_id=quiet.id, name="quiet")))
    # `late` really was overdue; then a backup succeeded.
    await bus.publish(js, ev.PlanOverdue(data=ev.PlanStateData(plan_id=late.id, name="late")))
    await eventually(lambda: count(receiver, 1), what="the real overdue")
    good = backup(late)
    await finished(js, pool, good, ev.JobCompleted(job_id=good.id))

    await eventually(lambda: count(receiver, 2), what="the recovery")
    assert receiver.titles() == ["borgflow: plan late is overdue", "borgflow: plan late recovered"]
    assert "The backup succeeded after the plan was overdue." in receiver.bodies[1]["message"]
    assert await recoveries(js, quiet.id) == []

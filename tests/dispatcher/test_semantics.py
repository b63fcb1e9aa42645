"""What the review of the dispatcher found wrong, each against a real NATS and a real dispatcher:
a writer that cannot run held its repository, a restart cancelled healthy long jobs as stalled,
an agent's own clock decided whether it was alive, a requeued job lost its place, and a job a
person cancelled could be retried automatically."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest_asyncio
from nats.js import JetStreamContext

from services.dispatcher.app import Dispatcher
from services.dispatcher.chains import retry_for
from shared import bus
from shared import events as ev
from shared.config import SystemSettings
from shared.jobs import fold
from shared.livesettings import put_settings
from tests.support.events import spec
from tests.support.waiting import eventually


@pytest_asyncio.fixture(loop_scope="session")
async def start(js: JetStreamContext) -> AsyncIterator[object]:
    """Start a dispatcher (as many times as a test likes); all are stopped at the end."""
    running: list[tuple[asyncio.Task[None], asyncio.Event]] = []

    async def go() -> Dispatcher:
        d = Dispatcher(js)
        stop = asyncio.Event()
        running.append((asyncio.create_task(d.loop(stop)), stop))
        await eventually(_ready(d), what="the dispatcher caught up")
        return d

    yield go
    for task, stop in running:
        stop.set()
        await asyncio.wait_for(task, 10)


def _ready(d: Dispatcher):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return d.ready.is_set() and d.agents_ready.is_set() and d.settings_ready.is_set()

    return check


async def heartbeat(js: JetStreamContext, agent: str, skew_s: float = 0.0) -> None:
    """A heartbeat whose `at` is the agent's clock, `skew_s` off."""
    at = ev.utcnow() + timedelta(seconds=skew_s)
    await bus.publish(js, ev.AgentHeartbeat(at=at, data=ev.HeartbeatData(agent=agent, interval_s=3600)))


async def status(js: JetStreamContext, job_id: str) -> str:
    view = fold(await bus.job_events(js, job_id))
    return "absent" if view is None else str(view.status)


async def queue(js: JetStreamContext, job: ev.JobSpec) -> None:
    await bus.publish(js, ev.JobQueued(job_id=job.id, data=job))


async def test_a_backup_waiting_for_an_offline_agent_does_not_hold_its_repository(
    js: JetStreamContext, start: object
) -> None:
    await heartbeat(js, "live")
    gone = spec("backup", agent="gone", repository_id="r", plan_id="p1")
    live = spec("backup", agent="live", repository_id="r", plan_id="p2")
    await queue(js, gone)
    await queue(js, live)
    await start()  # type: ignore[operator]
    await eventually(lambda: _is(js, live.id, "sent"), what="the live agent's backup sent")
    assert await status(js, gone.id) == "queued"


async def test_a_restarted_dispatcher_does_not_cancel_healthy_long_jobs_as_stalled(
    js: JetStreamContext, start: object
) -> None:
    """Started an hour ago with a 30-minute stall timeout, but showing life just now: a backup by
    its progress, a prune (which prints no progress) by its log lines."""
    await put_settings(js, SystemSettings(stall_timeout_s=1800))
    await heartbeat(js, "a1")
    an_hour_ago = ev.utcnow() - timedelta(hours=1)
    jobs = [spec("backup", repository_id="r1"), spec("prune", repository_id="r2")]
    for job in jobs:
        await queue(js, job)
        await bus.publish(js, ev.JobSent(job_id=job.id, at=an_hour_ago, data=ev.SentData(agent="a1")))
        await bus.publish(js, ev.JobStarted(job_id=job.id, at=an_hour_ago, data=ev.StartedData(agent="a1")))
    await bus.publish(js, ev.JobProgress(job_id=jobs[0].id, data=ev.Progress(percent=40.0)))
    line = ev.LogLine(at=ev.utcnow(), message="Keeping archive (rule: daily #1): a1")
    await bus.publish(js, ev.JobLog(job_id=jobs[1].id, data=ev.LogData(lines=[line])))
    d = await start()  # type: ignore[operator]
    # A few supervision ticks: a stalled job would have been cancelled by now.
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    for job in jobs:
        kinds = [e.type for e, _ in await bus.job_events(js, job.id)]
        assert "job.cancel_requested" not in kinds, f"{job.type} cancelled as stalled"
    assert set(d.activity_at) >= {job.id for job in jobs}


async def test_an_agent_is_alive_while_its_heartbeats_arrive_whatever_its_clock_says(
    js: JetStreamContext, start: object
) -> None:
    await heartbeat(js, "slow-clock", skew_s=-3 * 3600)  # its clock is three hours behind
    job = spec("check", agent="slow-clock", repository_id="r")
    await queue(js, job)
    await start()  # type: ignore[operator]
    await eventually(lambda: _is(js, job.id, "sent"), what="the job sent to an agent with a slow clock")


async def test_a_requeued_job_keeps_its_place_in_the_queue(js: JetStreamContext, start: object) -> None:
    await put_settings(js, SystemSettings(max_concurrent_jobs=1))
    await heartbeat(js, "a1")
    first, second = spec("check", repository_id="r1"), spec("check", repository_id="r2")
    await queue(js, first)
    await start()  # type: ignore[operator]
    await eventually(lambda: _is(js, first.id, "sent"), what="the first sent")
    await queue(js, second)
    # Its agent did not take it: back to the queue. It was queued first, so it goes first again.
    requeued = ev.JobRequeued(job_id=first.id, data=ev.RequeuedData(reason="agent did not take it"))
    await bus.publish(js, requeued, expect_last_seq=await bus.last_job_seq(js, first.id))

    async def sent_again() -> bool:
        return [e.type for e, _ in await bus.job_events(js, first.id)][-1] == "job.sent"

    await eventually(sent_again, what="the requeued job sent again")
    assert await status(js, second.id) == "queued"


def test_a_job_a_person_cancelled_is_never_retried_automatically() -> None:
    plan = ev.PlanRef(id="p", name="p", repository_id="r", retry=ev.RetryPolicy(max_attempts=3))
    job = spec("backup", repository_id="r", plan_id="p", plan=plan)
    events: list[ev.JobEvent] = [
        ev.JobQueued(job_id=job.id, data=job),
        ev.JobSent(job_id=job.id, data=ev.SentData(agent="a1")),
        ev.JobStarted(job_id=job.id, data=ev.StartedData(agent="a1")),
        ev.JobCancelRequested(job_id=job.id),
        # Its agent went silent before it could stop it: the dispatcher failed it as lost.
        ev.JobFailed(job_id=job.id, data=ev.OutcomeData(error=ev.JobError(kind="agent_lost", message="lost"))),
    ]
    view = fold([(e, i + 1) for i, e in enumerate(events)])
    assert view is not None and view.status == "failed"
    assert retry_for(job, view) is None
    # Without the cancel, the same failure is retried.
    view_uncancelled = fold([(e, i + 1) for i, e in enumerate(events) if not isinstance(e, ev.JobCancelRequested)])
    assert view_uncancelled is not None and retry_for(job, view_uncancelled) is not None


async def _is(js: JetStreamContext, job_id: str, want: str) -> bool:
    return await status(js, job_id) == want

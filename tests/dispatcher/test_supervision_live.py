"""The dispatcher's clock-driven duties against a real NATS, with its clock in the test's hand."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest_asyncio
from nats.js import JetStreamContext

from services.dispatcher.app import Dispatcher
from shared import bus, waiting
from shared import events as ev
from shared.config import SystemSettings
from shared.livesettings import put_settings
from tests.support.events import spec
from tests.support.waiting import eventually


class Clock:
    """Real time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest_asyncio.fixture(loop_scope="session")
async def dispatcher(js: JetStreamContext) -> AsyncIterator[tuple[Dispatcher, Clock]]:
    clock = Clock()
    d = Dispatcher(js, clock=clock)
    stop = asyncio.Event()
    task = asyncio.create_task(d.loop(stop))
    yield d, clock
    stop.set()
    await asyncio.wait_for(task, 10)


async def heartbeat(js: JetStreamContext, agent: str, interval: float = 5.0) -> None:
    hb = ev.AgentHeartbeat(data=ev.HeartbeatData(agent=agent, interval_s=interval))
    await bus.publish(js, hb)


async def status(js: JetStreamContext, job_id: str) -> str | None:
    view = await bus.load_job(js, job_id)
    return None if view is None else str(view.status)


async def test_a_silent_agent_goes_offline_and_its_jobs_are_lost(
    dispatcher: tuple[Dispatcher, Clock], js: JetStreamContext
) -> None:
    _, clock = dispatcher
    await put_settings(js, SystemSettings(agent_lost_after_s=60))
    await heartbeat(js, "a1")
    job = spec("check", agent="a1", repository_id="r1")
    await bus.publish(js, ev.JobQueued(job_id=job.id, data=job))
    await eventually(lambda: _is(js, job.id, "sent"), what="sent to the online agent")
    await bus.publish(js, ev.JobStarted(job_id=job.id, data=ev.StartedData(agent="a1")))

    clock.offset = 20  # 4 intervals without a heartbeat: offline, not yet lost
    offline = await eventually(lambda: _last(js, "borgflow.agents.a1.offline"), what="offline announced")
    assert isinstance(offline, ev.AgentOffline) and offline.data.agent == "a1"
    assert await status(js, job.id) == "running"

    clock.offset = 20 + 60
    await eventually(lambda: _is(js, job.id, "failed"), what="the job lost with its agent")
    view = await bus.load_job(js, job.id)
    assert view is not None and view.error is not None and view.error.kind == "agent_lost"

    await heartbeat(js, "a1")  # it comes back
    clock.offset = 0
    back = await eventually(lambda: _last(js, "borgflow.agents.a1.online"), what="online announced")
    assert isinstance(back, ev.AgentOnline)


async def test_a_job_without_progress_is_stopped_as_stalled(
    dispatcher: tuple[Dispatcher, Clock], js: JetStreamContext
) -> None:
    _, clock = dispatcher
    await heartbeat(js, "a1", interval=3600)
    plan = ev.PlanRef(id="p1", name="p1", repository_id="r1", stall_timeout_s=300)
    job = spec("backup", agent="a1", repository_id="r1", plan=plan, plan_id="p1")
    await bus.publish(js, ev.JobQueued(job_id=job.id, data=job))
    await eventually(lambda: _is(js, job.id, "sent"), what="sent")
    await bus.publish(js, ev.JobStarted(job_id=job.id, data=ev.StartedData(agent="a1")))
    await bus.publish(js, ev.JobProgress(job_id=job.id, data=ev.Progress(nfiles=1)))
    clock.offset = 301

    async def cancel_requested() -> ev.JobCancelRequested | None:
        for e, _ in await bus.job_events(js, job.id):
            if isinstance(e, ev.JobCancelRequested):
                return e
        return None

    asked = await eventually(cancel_requested, what="a stall cancel")
    assert asked.data.kind == "stalled" and "no progress" in asked.data.reason


async def test_an_unacknowledged_send_goes_back_to_the_queue_and_waiting_is_published(
    dispatcher: tuple[Dispatcher, Clock], js: JetStreamContext
) -> None:
    _, clock = dispatcher
    await put_settings(js, SystemSettings(sent_timeout_s=30))
    await heartbeat(js, "a1", interval=3600)
    job = spec("compact", agent="a1", repository_id="r1")
    await bus.publish(js, ev.JobQueued(job_id=job.id, data=job))
    await eventually(lambda: _is(js, job.id, "sent"), what="sent")
    clock.offset = 31

    async def requeued() -> bool:
        return any(isinstance(e, ev.JobRequeued) for e, _ in await bus.job_events(js, job.id))

    await eventually(requeued, what="requeued")
    # A job for an agent never seen waits, and says why.
    lonely = spec("check", agent="nowhere", repository_id="r2")
    await bus.publish(js, ev.JobQueued(job_id=lonely.id, data=lonely))

    async def reason() -> str | None:
        found = await waiting.ask(bus.nc_of(js), [lonely.id, job.id])
        return found[lonely.id].reason if lonely.id in found else None

    assert await eventually(reason, what="the waiting reason") == "agent_offline"
    # Asked, the dispatcher says where each queued job stands too.
    found = await waiting.ask(bus.nc_of(js), [lonely.id])
    assert found[lonely.id].position is not None


async def _is(js: JetStreamContext, job_id: str, want: str) -> bool:
    return await status(js, job_id) == want


async def _last(js: JetStreamContext, subject: str) -> ev.AnyEvent | None:
    try:
        msg = await js.get_last_msg("BORGFLOW_AGENTS", subject)
    except Exception:
        return None
    return ev.decode(msg.data)

"""Automatic retries per plan: transient failures only, with backoff, each attempt a new job."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from nats.js import JetStreamContext

from services.dispatcher.app import Dispatcher
from services.dispatcher.chains import retry_for
from services.dispatcher.domain import Job, decide
from shared import bus
from shared import events as ev
from shared.config import SystemSettings
from shared.jobs import JobView, fold
from tests.support.audit import audit
from tests.support.events import spec
from tests.support.waiting import eventually

PLAN = ev.PlanRef(
    id="p1", name="nightly", repository_id="r1", retry=ev.RetryPolicy(max_attempts=2, delay_s=60, backoff=2)
)


def failed(s: ev.JobSpec, kind: str, archive: str | None = None) -> JobView:
    result = ev.JobResult(archive=archive) if archive else None
    out = ev.OutcomeData(error=ev.JobError(kind=kind, message="m"), result=result)
    view = fold(
        [
            (ev.JobQueued(job_id=s.id, data=s), 1),
            (ev.JobSent(job_id=s.id, data=ev.SentData(agent=s.agent)), 2),
            (ev.JobStarted(job_id=s.id, data=ev.StartedData(agent=s.agent)), 3),
            (ev.JobFailed(job_id=s.id, data=out), 4),
        ]
    )
    assert view is not None
    return view


def test_transient_failures_are_retried_with_backoff() -> None:
    first = spec("backup", plan=PLAN, plan_id="p1")
    view = failed(first, "lock_timeout", archive="nightly-2026-11-23T03:00:00")
    second = retry_for(first, view)
    assert second is not None and second.retry_of == first.id and second.attempt == 2
    assert second.archive == "nightly-2026-11-23T03:00:00", "the executor checks whether it exists"
    assert second.not_before == view.finished_at + timedelta(seconds=60)  # type: ignore[operator]
    second_failed = failed(second, "agent_lost")
    third = retry_for(second, second_failed)
    assert third is not None and third.attempt == 3
    assert third.not_before == second_failed.finished_at + timedelta(seconds=120)  # type: ignore[operator]
    assert retry_for(third, failed(third, "lock_timeout")) is None, "max_attempts reached"
    assert retry_for(first, view) == second, "derived deterministically"


def test_other_failures_and_plans_without_retry_are_not_retried() -> None:
    assert retry_for(spec("backup", plan=PLAN, plan_id="p1"), failed(spec("backup"), "passphrase")) is None
    no_retry = ev.PlanRef(id="p2", name="p2", repository_id="r1")
    s = spec("backup", plan=no_retry, plan_id="p2")
    assert retry_for(s, failed(s, "lock_timeout")) is None


def test_a_retry_waits_out_its_backoff_without_blocking_others() -> None:
    waiting = Job(id="j1", type="backup", agent="a1", repository_id="r1", order=1, not_before=1000.0)
    other = Job(id="j2", type="backup", agent="a1", repository_id="r2", order=2)
    d = decide([waiting, other], [], SystemSettings(), None, now=990.0)
    assert d.start == ["j2"] and d.waiting["j1"].reason == "retry_backoff"
    assert decide([waiting], [], SystemSettings(), None, now=1000.0).start == ["j1"]


async def test_the_dispatcher_queues_the_retry_once(js: JetStreamContext) -> None:
    quick = ev.PlanRef(id="p3", name="quick", repository_id="r1", retry=ev.RetryPolicy(max_attempts=1, delay_s=0))
    stop = asyncio.Event()
    task = asyncio.create_task(Dispatcher(js).loop(stop))
    try:
        s = spec("backup", agent="a1", plan=quick, plan_id="p3", repository_id="r1")
        await bus.publish(js, ev.JobQueued(job_id=s.id, data=s))
        await bus.publish(js, ev.JobSent(job_id=s.id, data=ev.SentData(agent="a1")))
        await bus.publish(js, ev.JobStarted(job_id=s.id, data=ev.StartedData(agent="a1")))
        error = ev.JobError(kind="executor_restarted", message="gone")
        await bus.publish(js, ev.JobFailed(job_id=s.id, data=ev.OutcomeData(error=error)))

        async def retries() -> list[JobView]:
            return [v for v in (await audit(js)).jobs.values() if v.retry_of == s.id]

        views = await eventually(retries, what="the automatic retry")
        assert len(views) == 1 and views[0].attempt == 2 and views[0].trigger == s.trigger
    finally:
        stop.set()
        await task

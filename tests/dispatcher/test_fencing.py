"""A dispatcher deposed while one of its sends was on the way: the send lands after its successor
has filled the slots, and the executor refuses it, so the limit holds for what actually runs.

Real NATS, two real executors, two dispatchers; the old one's send is held in the test's hand
(`before_send`) while the lease passes to the new one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from nats.js import JetStreamContext

from services.dispatcher.app import Dispatcher
from services.executor.app import run as run_executor
from shared import bus, ids
from shared import events as ev
from shared.config import Settings, SystemSettings
from shared.lease import Lease
from shared.livesettings import put_settings
from shared.streams import LEASES_BUCKET
from shared.testing import NatsServer
from tests.support.audit import read_jobs_stream
from tests.support.waiting import eventually

AGENTS = ("a1", "a2")


@pytest_asyncio.fixture(loop_scope="session")
async def executors(nats_server: NatsServer, js: JetStreamContext, tmp_path: Path) -> AsyncIterator[None]:
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(
            run_executor(
                Settings(nats_url=nats_server.url, agent=a, data_dir=str(tmp_path / a), heartbeat_interval_s=0.5),
                stop,
            )
        )
        for a in AGENTS
    ]
    yield
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 30)


def job(
    type_: str, agent: str, priority: int = 0, plan: ev.PlanRef | None = None, repo: str | None = None
) -> ev.JobSpec:
    return ev.JobSpec(
        id=ids.new_id(),
        type=type_,
        agent=agent,
        priority=priority,
        created_at=ev.utcnow(),
        plan=plan,
        plan_id=plan.id if plan else None,
        repository_id=repo,
        repository=ev.RepositoryRef(id=repo, name=repo, location="/nonexistent/repo", agent=agent) if repo else None,
    )


async def max_running(js: JetStreamContext) -> int:
    """The most jobs running (started, not ended) at once, read from the stream."""
    running: set[str] = set()
    most = 0
    for event, _ in await read_jobs_stream(js):
        if isinstance(event, ev.JobStarted):
            running.add(event.job_id or "")
        elif isinstance(event, ev.JobCompleted | ev.JobWarning | ev.JobFailed | ev.JobCancelled):
            running.discard(event.job_id or "")
        most = max(most, len(running))
    return most


async def test_a_deposed_dispatchers_late_send_is_refused(js: JetStreamContext, executors: None) -> None:
    await put_settings(js, SystemSettings(max_concurrent_jobs=1))
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        # The old dispatcher: it took the lease once and then stopped renewing it (paused,
        # cut off), so it still believes it is active.
        held_send, release = asyncio.Event(), asyncio.Event()
        old_lease = Lease(js, "dispatcher")
        assert await old_lease._try()
        old_lease.held.set()
        old = Dispatcher(js)

        async def hold(job_id: str) -> None:
            held_send.set()
            await release.wait()

        old.before_send = hold
        tasks.append(asyncio.create_task(old.loop(stop)))
        await eventually(_ready(old), what="the old dispatcher caught up")
        old.lease = old_lease  # after its loop set its own (none): it never renews this one

        short = job("ping", "a2")
        await bus.publish(js, ev.JobQueued(job_id=short.id, data=short))
        await asyncio.wait_for(held_send.wait(), 20)  # its send of `short` is on the way, held

        # The lease passes: it aged out of the bucket (here: removed), and a new dispatcher takes
        # it, finding a long job (its pre-script sleeps) of higher priority to fill the one slot.
        await (await js.key_value(LEASES_BUCKET)).delete("dispatcher")
        plan = ev.PlanRef(id="p", name="p", repository_id="r", paths=["/nonexistent"], pre_scripts=["sleep 3"])
        long = job("backup", "a1", priority=5, plan=plan, repo="r")
        await bus.publish(js, ev.JobQueued(job_id=long.id, data=long))
        new = Dispatcher(js)
        tasks.append(asyncio.create_task(new.loop(stop, Lease(js, "dispatcher"))))
        await eventually(_started(js, long.id), what="the long job running")
        assert new.epoch is not None and old_lease.epoch is not None and new.epoch > old_lease.epoch

        release.set()  # the old dispatcher's send of `short` lands now, while `long` runs

        async def refused() -> bool:
            return any(isinstance(e, ev.JobRequeued) for e, _ in await bus.job_events(js, short.id))

        await eventually(refused, what="the stale send refused and requeued")
        requeue = next(e for e, _ in await bus.job_events(js, short.id) if isinstance(e, ev.JobRequeued))
        assert "lost its lease" in requeue.data.reason
        await eventually(_ended(js, short.id), timeout=30, what="the short job run later, by the new dispatcher")
        assert await max_running(js) == 1
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 15)


def _ready(d: Dispatcher):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return d.ready.is_set()

    return check


def _started(js: JetStreamContext, job_id: str):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return any(isinstance(e, ev.JobStarted) for e, _ in await bus.job_events(js, job_id))

    return check


def _ended(js: JetStreamContext, job_id: str):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return any(e.type in ("job.completed", "job.failed") for e, _ in await bus.job_events(js, job_id))

    return check

"""Plan state changes the notifier raises or checks: `plan.recovered`, and stale `plan.overdue`.

A backup that succeeds after failures, or after its plan was overdue, is a
recovery: the notifier appends `PlanRecovered` (message id `recovered:<job_id>`,
and a look at the stream first, so once per job however often it is redelivered),
which then reaches targets through the plans consumer like any plan event.

Both decisions read the plan's history from the read model, so they first wait
until the read model has applied the event being handled.
"""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg
import msgspec
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from services.notifier import store
from services.notifier.domain import RECOVERY_LOOKBACK, recovery
from shared import bus
from shared.events import JobStatus, PlanOverdue, PlanRecovered, PlanStateData, decode
from shared.jobs import JobView
from shared.streams import PLANS

log = logging.getLogger(__name__)

POLL_S = 0.05


class ReadModelBehind(Exception):
    """The read model has not applied the event yet: handle it again later."""


async def plan_event(js: JetStreamContext, plan_id: str, kind: str) -> PlanOverdue | PlanRecovered | None:
    """The plan's latest `plan.<kind>` event."""
    try:
        msg = await js.get_last_msg(PLANS, f"borgflow.plans.{plan_id}.{kind}")
    except NotFoundError:
        return None
    try:
        event = decode(msg.data or b"")
    except msgspec.MsgspecError:
        return None
    return event if isinstance(event, PlanOverdue | PlanRecovered) else None


async def wait_projected(pool: asyncpg.Pool, job_id: str, seq: int, timeout: float) -> None:
    """Return once the read model holds the job at `seq` or later; ReadModelBehind after `timeout`.

    The projector applies the stream in order, so then every earlier event is applied too.
    """
    deadline = time.monotonic() + timeout
    while True:
        async with pool.acquire() as conn:
            if await store.projected_seq(conn, job_id) >= seq:
                return
        if time.monotonic() >= deadline:
            raise ReadModelBehind(f"the read model has not applied job {job_id} up to {seq} yet")
        await asyncio.sleep(POLL_S)


async def raise_recovered(
    pool: asyncpg.Pool, js: JetStreamContext, view: JobView, seq: int, wait_s: float
) -> PlanRecovered | None:
    """Append `plan.recovered` if this successful backup ends a run of failures or an overdue."""
    if view.type != "backup" or view.plan_id is None or view.finished_at is None:
        return None
    if view.status not in (JobStatus.COMPLETED, JobStatus.WARNING):
        return None
    plan_id, finished = view.plan_id, view.finished_at
    last = await plan_event(js, plan_id, "recovered")
    if last is not None and last.data.job_id == view.id:
        return None  # appended already, before a crash or by another instance
    await wait_projected(pool, view.id, seq, wait_s)
    async with pool.acquire() as conn:
        earlier = await store.earlier_backups(conn, plan_id, view.id, finished, RECOVERY_LOOKBACK)
    prev_success = next((at for status, at in earlier if status != JobStatus.FAILED), None)
    overdue = await plan_event(js, plan_id, "overdue")
    # Overdue since the last success, and raised before this backup finished (one raised
    # after it, from a read model that had not seen it yet, was never true).
    was_overdue = overdue is not None and (prev_success is None or overdue.at > prev_success) and overdue.at <= finished
    detail = recovery([status for status, _ in earlier], was_overdue)
    if detail is None:
        return None
    event = PlanRecovered(
        at=finished,
        data=PlanStateData(
            plan_id=plan_id,
            name=view.plan_name or "",
            project=view.project,
            last_success_at=finished,
            job_id=view.id,
            detail=detail,
        ),
    )
    await bus.publish(js, event, msg_id=f"recovered:{view.id}")
    log.info("plan recovered", extra={"plan_id": plan_id, "job_id": view.id})
    return event


async def overdue_still_true(pool: asyncpg.Pool, event: PlanOverdue) -> bool:
    """False when a backup of the plan had succeeded before the overdue was raised.

    The scheduler reads the read model; one that lagged behind a success by a moment
    raises an overdue that was never true, and nobody should be woken for it.
    """
    async with pool.acquire() as conn:
        ok = await store.succeeded_between(conn, event.data.plan_id, event.data.last_success_at, event.at)
    return not ok

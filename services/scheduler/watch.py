"""The scheduler's clock-driven duties besides firing: stale scheduled checks, overdue plans.

Only the active scheduler (the lease holder) runs them, on its clock. Each append
is safe to repeat: a stale check is failed with compare-and-set on the job's last
event, and a plan.overdue is raised once per last success (the stream remembers).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime

import asyncpg
import msgspec
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from services.scheduler import store
from services.scheduler.domain import (
    STALE_CHECK_AFTER,
    PlanHealth,
    is_overdue,
    is_stale,
    overdue_detail,
    overdue_msg_id,
    overdue_raised,
    stale_error,
)
from shared import bus, waiting
from shared.events import JobFailed, JobStatus, OutcomeData, PlanOverdue, PlanStateData, decode
from shared.exceptions import ConcurrencyConflict
from shared.jobs import labels_of
from shared.streams import PLANS

log = logging.getLogger(__name__)

# The dispatcher answers from memory; more than the api's wait, as nobody waits on this.
ASK_TIMEOUT_S = 2.0


async def fail_stale_checks(
    pool: asyncpg.Pool, js: JetStreamContext, now: datetime, nc: NATS | None = None
) -> list[str]:
    """Fail scheduled checks that waited too long for their own repository or agent (domain.is_stale)."""
    async with pool.acquire() as conn:
        candidates = await store.waiting_checks(conn, now - STALE_CHECK_AFTER)
    if not candidates:
        return []
    # Why each waits, in the dispatcher's words: one behind other repositories' jobs on a
    # busy agent is not stuck. No dispatcher answering: no word, and queued ones wait.
    ids = [c.job_id for c in candidates]
    reasons = await waiting.ask(nc, ids, timeout=ASK_TIMEOUT_S) if nc is not None else {}
    failed: list[str] = []
    for check in candidates:
        check = replace(check, waiting=reasons.get(check.job_id))
        if not is_stale(check, now):
            continue
        # The read model may lag: decide on the job as its own events make it (sent a
        # moment ago, say), and append only if nothing happened to it since.
        view, token = await bus.load_for_update(js, check.job_id)
        if view is None or view.status not in (JobStatus.QUEUED, JobStatus.SENT):
            continue
        check = replace(check, status=view.status, sent_at=view.sent_at)
        if not is_stale(check, now):
            continue
        data = OutcomeData(error=stale_error(check), job=labels_of(view))
        event = JobFailed(job_id=check.job_id, at=now, data=data)
        try:
            await bus.publish(js, event, expect_last_seq=token)
        except ConcurrencyConflict:
            log.info("stale check moved on before it was failed", extra={"job_id": check.job_id})
            continue
        log.warning("failed a scheduled check that never started", extra={"job_id": check.job_id})
        failed.append(check.job_id)
    return failed


async def last_overdue(js: JetStreamContext, plan_id: str) -> PlanOverdue | None:
    try:
        msg = await js.get_last_msg(PLANS, f"borgflow.plans.{plan_id}.overdue")
    except NotFoundError:
        return None
    try:
        event = decode(msg.data or b"")
    except msgspec.MsgspecError:
        log.warning("unreadable plan.overdue event", extra={"plan_id": plan_id})
        return None
    return event if isinstance(event, PlanOverdue) else None


async def raise_overdue(pool: asyncpg.Pool, js: JetStreamContext, now: datetime) -> datetime | None:
    """Raise plan.overdue for plans whose backups stopped succeeding; returns the next deadline."""
    async with pool.acquire() as conn:
        plans = await store.guarded_plans(conn)
    upcoming: list[datetime] = []
    for plan in plans:
        if not is_overdue(plan, now):
            upcoming.append(plan.deadline)
            continue
        last = await last_overdue(js, plan.plan_id)
        if overdue_raised(plan, last.data.last_success_at if last else None, last is not None):
            continue
        await publish_overdue(js, plan, now)
    return min(upcoming) if upcoming else None


async def publish_overdue(js: JetStreamContext, plan: PlanHealth, now: datetime) -> None:
    data = PlanStateData(
        plan_id=plan.plan_id,
        name=plan.name,
        project=plan.project,
        last_success_at=plan.last_success_at,
        job_id=plan.last_success_job,
        detail=overdue_detail(plan),
    )
    # The message id makes a concurrent second scheduler's append land once; the
    # stream lookup above makes it once per last success beyond the duplicate window.
    await bus.publish(js, PlanOverdue(at=now, data=data), msg_id=overdue_msg_id(plan))
    log.warning("plan overdue", extra={"plan_id": plan.plan_id, "last_success_at": plan.last_success_at})

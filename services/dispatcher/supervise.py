"""The dispatcher's clock-driven duties: sends not taken up, silent agents, lost and stalled jobs.

Everything here reacts to time passing, not to events, so it runs on a one-second
tick; the decisions themselves are pure (watch.py) and every append is guarded
by compare-and-set, so a tick on a standby or a late one does no harm.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from prometheus_client import Gauge

from services.dispatcher.watch import agent_transitions, lost_jobs, stalled_jobs
from shared.events import (
    CancelRequestedData,
    JobCancelRequested,
    JobFailed,
    JobRequeued,
    JobStatus,
    OutcomeData,
    RequeuedData,
)
from shared.jobs import labels_of

if TYPE_CHECKING:
    from services.dispatcher.app import Dispatcher

log = logging.getLogger(__name__)

TICK_S = 1.0

ACTIVE = Gauge("borgflow_dispatcher_active", "1 while this dispatcher holds the lease, else 0.")
AGENTS_ONLINE = Gauge("borgflow_agents_online", "Agents whose heartbeats arrive, as the dispatcher sees them.")


async def requeue_unacknowledged(d: Dispatcher, now: float) -> None:
    """Sent jobs their agent did not start in time go back to the queue."""
    for view in d.in_flight():
        if view.status != JobStatus.SENT or view.sent_at is None:
            continue
        if now - view.sent_at.timestamp() < d.limits.sent_timeout_s:
            continue
        reason = f"agent {view.agent} did not start it within {d.limits.sent_timeout_s:g}s"
        if await d.append(JobRequeued(job_id=view.id, data=RequeuedData(reason=reason))):
            log.warning("requeued an unacknowledged job", extra={"job_id": view.id, "agent": view.agent})


async def watch_agents(d: Dispatcher, now: float) -> None:
    for agent, online in agent_transitions(d.seen, d.announced, now).items():
        await d.announce(agent, online)
    for view, error in lost_jobs(d.in_flight(), d.seen, d.limits, now):
        if await d.append(JobFailed(job_id=view.id, data=OutcomeData(error=error, job=labels_of(view)))):
            log.error("job lost with its agent", extra={"job_id": view.id, "agent": view.agent})


async def stop_stalled(d: Dispatcher, now: float) -> None:
    for view, silent in stalled_jobs(d.in_flight(), d.specs, d.activity_at, d.limits, now):
        reason = f"no progress and no log line for {silent:.0f}s (stall timeout)"
        data = CancelRequestedData(by="dispatcher", reason=reason, kind="stalled")
        if await d.append(JobCancelRequested(job_id=view.id, data=data)):
            log.warning("cancelling a stalled job", extra={"job_id": view.id, "silent_s": round(silent)})


async def tick(d: Dispatcher, stop: asyncio.Event) -> None:
    was_online = d.online()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), TICK_S)
        ACTIVE.set(1 if d.active and d.lease is not None else 0)
        if not (d.active and d.ready.is_set() and d.agents_ready.is_set()):
            continue
        now = d.clock()
        AGENTS_ONLINE.set(len(d.online()))
        try:
            await requeue_unacknowledged(d, now)
            await watch_agents(d, now)
            await stop_stalled(d, now)
        except Exception as e:  # NATS briefly away: the next tick tries again
            log.warning("supervision tick failed: %s", e)
        now_online = d.online()
        backoff_over = (d.queue.next_backoff() or float("inf")) <= now
        if now_online != was_online or backoff_over:
            # An agent came or went, or a retry's backoff ran out: decide again.
            was_online = now_online
            d.wake.set()

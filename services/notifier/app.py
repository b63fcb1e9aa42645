"""The notifier's composition: one durable consumer per stream, apprise delivery, a delivery ledger.

Each (event, target) pair is delivered once: the ledger in Postgres records a
successful delivery, so a redelivered event (a crash between sending and
acking) skips the targets already served. A failed delivery is retried with
backoff by not acking the event (nak with a delay), and given up after the
last backoff step with the error recorded. Distinct events are never merged,
so a failure that repeats every night is reported every night.

Streams and what is taken from them:
  BORGFLOW_JOBS       job.started and the outcomes   -> `<type>.<outcome>` (backup.failed)
  BORGFLOW_SCHEDULES  schedule.missed                -> schedule.missed
  BORGFLOW_AGENTS     agent.offline                  -> agent.offline
  BORGFLOW_PLANS      plan.overdue, plan.recovered   -> plan.overdue, backup.recovered
  BORGFLOW_REPOSITORIES  repository.storage_low, .storage_recovered -> the same names
A successful backup that ends failures (or an overdue) also makes the notifier
append plan.recovered (recovery.py), which comes back through the plans consumer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from functools import partial

import asyncpg
import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from services.notifier import store
from services.notifier.domain import (
    Notice,
    agent_offline_notice,
    job_notice,
    plan_overdue_notice,
    plan_recovered_notice,
    schedule_missed_notice,
    storage_notice,
    targets_for,
    worth_reading,
)
from services.notifier.recovery import ReadModelBehind, overdue_still_true, raise_recovered
from shared import apprise_targets, bus, db, metrics, probes, tracing
from shared.config import Settings
from shared.events import (
    AgentOffline,
    AnyEvent,
    JobStarted,
    Outcome,
    PlanOverdue,
    PlanRecovered,
    RepositoryStorageLow,
    RepositoryStorageRecovered,
    ScheduleMissed,
    decode,
)
from shared.jobs import JobView, fold
from shared.runtime import cancel_and_wait, resilient
from shared.streams import AGENTS, JOBS, PLANS, REPOSITORIES, SCHEDULES, ensure_streams

log = logging.getLogger(__name__)

DURABLE = "notifier"
CONSUMERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (JOBS, tuple(f"borgflow.jobs.*.{s}" for s in ("started", "completed", "warning", "failed", "cancelled"))),
    (SCHEDULES, ("borgflow.schedules.*.missed",)),
    (AGENTS, ("borgflow.agents.*.offline",)),
    (PLANS, ("borgflow.plans.*.overdue", "borgflow.plans.*.recovered")),
    (REPOSITORIES, ("borgflow.repositories.*.storage_low", "borgflow.repositories.*.storage_recovered")),
)
BATCH = 10

# Called with the event id once an event is handled, before it is acked: tests crash here.
AfterHandled = Callable[[str], Awaitable[None]]


class NotifierOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Delivery timings; the defaults suit production, tests shorten them."""

    backoff_s: tuple[float, ...] = (2.0, 10.0, 30.0, 120.0, 600.0)
    """Delays before each retry of an event some target did not get; after the last, it is given up."""
    ack_wait_s: float = 120.0
    """An event handled but not acked (the notifier died) comes back after this long."""
    read_model_wait_s: float = 2.0
    """How long a recovery check waits for the read model to apply the event before retrying later."""


class Notifier:
    def __init__(
        self,
        pool: asyncpg.Pool,
        js: JetStreamContext,
        page_url: str,
        options: NotifierOptions | None = None,
        after_handled: AfterHandled | None = None,
    ) -> None:
        self.pool = pool
        self.js = js
        self.page_url = page_url
        self.options = options or NotifierOptions()
        self.after_handled = after_handled

    # ------------------------------------------------------------------ deciding

    async def job_as_of(self, job_id: str, seq: int) -> JobView | None:
        """The job as of its event at `seq` (a later one may already be in the stream)."""
        return fold([(e, s) for e, s in await bus.job_events(self.js, job_id) if s <= seq])

    async def notice(self, event: AnyEvent) -> Notice | None:
        """What to tell people about a non-job event, or None when it is nothing to notify."""
        if isinstance(event, ScheduleMissed):
            async with self.pool.acquire() as conn:
                project = await store.schedule_project(conn, event.data.schedule_id)
            return schedule_missed_notice(event.data, project, self.page_url)
        if isinstance(event, AgentOffline):
            return agent_offline_notice(event.data, self.page_url)
        if isinstance(event, PlanOverdue):
            if not await overdue_still_true(self.pool, event):
                log.info("a backup succeeded before this overdue: not notified", extra={"plan_id": event.data.plan_id})
                return None
            return plan_overdue_notice(event.data, self.page_url)
        if isinstance(event, PlanRecovered):
            return plan_recovered_notice(event.data, self.page_url)
        if isinstance(event, RepositoryStorageLow | RepositoryStorageRecovered):
            return storage_notice(event.data, isinstance(event, RepositoryStorageLow), self.page_url)
        return None

    # ------------------------------------------------------------------ delivering

    async def deliver(self, msg: Msg, event_id: str, notice: Notice, final: bool) -> bool:
        """Send `notice` to every target that wants it and lacks it; False if one must be retried."""
        async with self.pool.acquire() as conn:
            wanted = targets_for(await store.targets(conn), notice)
            done = await store.delivered(conn, event_id) if wanted else set()
        all_ok = True
        for t in wanted:
            if t["id"] in done:
                continue
            await msg.in_progress()  # a slow target must not let the event be redelivered meanwhile
            # The target's name and id only: its URL may carry a token.
            attributes = {"borgflow.target_id": t["id"], "borgflow.target": t["name"], "borgflow.event": notice.key}
            with tracing.tracer().start_as_current_span("notify.target", attributes=attributes) as span:
                error = await apprise_targets.send(t["url"], notice.title, notice.body)
                span.set_attribute("borgflow.delivered", error is None)
            metrics.NOTIFICATIONS.labels(event=notice.key, outcome="failed" if error else "delivered").inc()
            if error and final:
                error = f"gave up after {msg.metadata.num_delivered} attempts: {error}"
            async with self.pool.acquire() as conn:
                await store.record(conn, event_id, t["id"], notice.key, notice.job_id, error)
            extra = {"event_id": event_id, "target": t["name"], "event": notice.key, "job_id": notice.job_id}
            if error:
                all_ok = False
                log.warning("notification not delivered: %s", error, extra=extra)
            else:
                log.info("notified", extra=extra)
        return all_ok

    async def handle(self, event: AnyEvent, msg: Msg, final: bool) -> bool:
        """Notify one event (and raise a recovery it implies); False if it must be handled again."""
        if not isinstance(event, JobStarted | Outcome):
            notice = await self.notice(event)
            return notice is None or await self.deliver(msg, event.id, notice, final)
        outcome = event.type.removeprefix("job.")
        labels = event.data.job if isinstance(event, Outcome) else None
        # A success of a backup may end a run of failures (plan.recovered): always read it.
        may_recover = outcome in ("completed", "warning") and (labels is None or labels.type == "backup")
        if not may_recover:
            async with self.pool.acquire() as conn:
                targets = await store.targets(conn)
            if not worth_reading(targets, outcome, labels):
                return True  # nobody listens: the job's history need not be read
        seq = bus.seq_of(msg)
        view = await self.job_as_of(event.job_id or "", seq)
        if view is None:
            return True  # deleted since, or never accepted
        notice = job_notice(view, outcome, self.page_url)
        ok = await self.deliver(msg, event.id, notice, final)
        try:
            await raise_recovered(self.pool, self.js, view, seq, self.options.read_model_wait_s)
        except ReadModelBehind as e:
            if not final:
                log.info("recovery check postponed: %s", e, extra={"job_id": view.id})
                return False
            log.error("recovery check given up: %s", e, extra={"job_id": view.id})
        return ok

    async def on_message(self, msg: Msg) -> None:
        try:
            event = decode(msg.data)
        except msgspec.MsgspecError as e:
            log.warning("skipping a malformed message: %s", e, extra={"subject": msg.subject})
            await msg.term()
            return
        attempt = msg.metadata.num_delivered or 1
        backoff = self.options.backoff_s
        final = attempt > len(backoff)
        try:
            attributes = {"borgflow.event": event.type, "borgflow.event_id": event.id}
            if event.job_id:
                attributes["borgflow.job_id"] = event.job_id
            parent = tracing.context_of(msg.headers)
            with tracing.tracer().start_as_current_span("notify", context=parent, attributes=attributes):
                ok = await self.handle(event, msg, final)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
            # Postgres or NATS briefly away: the event comes back, the ledger skips what was sent.
            log.warning("notification postponed: %s", e, extra={"event_id": event.id})
            ok = False
        except Exception:
            log.exception("notification failed", extra={"event_id": event.id, "subject": msg.subject})
            ok = False
        if self.after_handled is not None:
            await self.after_handled(event.id)
        if ok:
            await msg.ack()
        elif final:
            log.error("giving up on a notification after %d attempts", attempt, extra={"event_id": event.id})
            await msg.term()
        else:
            await msg.nak(delay=backoff[attempt - 1])

    # ------------------------------------------------------------------ consuming

    async def consume(self, stream: str, subjects: tuple[str, ...]) -> None:
        sub = await bus.durable_pull(
            self.js,
            stream=stream,
            durable=DURABLE,
            filter_subjects=subjects,
            deliver_policy=DeliverPolicy.NEW,
            ack_wait=self.options.ack_wait_s,
        )
        async for msgs in bus.batches(sub, batch=BATCH, follower=f"notifier-{stream}"):
            for m in msgs:
                try:
                    await self.on_message(m)
                except Exception as e:  # the ack itself failed (NATS away): the event comes back
                    log.warning("could not settle a notification: %s", e, extra={"subject": m.subject})

    async def loop(self, stop: asyncio.Event) -> None:
        tasks = [
            asyncio.create_task(resilient(f"notifier-{stream}", partial(self.consume, stream, subjects)))
            for stream, subjects in CONSUMERS
        ]
        waiting = asyncio.ensure_future(stop.wait())
        try:
            done, _ = await asyncio.wait([waiting, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                error = None if t is waiting else t.exception()
                if error is not None:
                    raise error  # a consumer died: let the service exit and be restarted
        finally:
            await cancel_and_wait(waiting, *tasks)


async def run(
    settings: Settings,
    stop: asyncio.Event,
    *,
    options: NotifierOptions | None = None,
    after_handled: AfterHandled | None = None,
) -> None:
    """Notify until `stop` is set."""
    pool = await db.create_pool(settings.database_url, min_size=1, max_size=4)
    nc = await bus.connect(settings.nats_url, "notifier")
    try:
        js = nc.jetstream()
        await bus.patiently("creating the streams", lambda: ensure_streams(js, replicas=settings.stream_replicas))
        await asyncio.to_thread(apprise_targets.warm_up)
        with probes.registered("notifier", lambda: None if nc.is_connected else "NATS is not connected"):
            await Notifier(pool, js, settings.page_url, options, after_handled).loop(stop)
    finally:
        await nc.close()
        await pool.close()

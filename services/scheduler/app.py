"""The scheduler's composition: wait for the next fire time (or a schedule change), queue.

One fire time is one job everywhere: the job id and the append's message id
are derived from (schedule, fire time), so two schedulers, or one restarted
at the fire time, append it once (JetStream de-duplication), and before
submitting a fire time the scheduler looks the job up in the stream, so a
restart long after the duplicate window still does not queue it twice.

A fire time whose job the queue rules refuse (the plan's queue behaviour, a
full queue) or that cannot be built any more (its plan was deleted) is a
schedule failure: `schedule.missed` with the reason, which the notifier sends.

Between fire times the active scheduler wakes at least every TICK of its clock
for its other time-driven duties (watch.py): stale scheduled checks and plans
whose backups stopped succeeding.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

import asyncpg
import msgspec
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from services.scheduler import store, watch
from services.scheduler.store import ScheduleRow
from services.scheduler.timing import Due, due
from shared import bus, db, ids, metrics, probes, tracing
from shared.config import Settings
from shared.cron import BadSchedule
from shared.events import ScheduleFired, ScheduleFireData, ScheduleMissed, decode
from shared.lease import Lease
from shared.runtime import resilient
from shared.streams import SCHEDULES, ensure_streams
from shared.submit import InvalidRequest, Origin, Rejected, parse_request, submit

log = logging.getLogger(__name__)

# A fire found this late is still on time (the scheduler was busy, not down).
GRACE_S = 60.0
# The longest the active scheduler sleeps: its clock-driven duties run at least this often.
TICK = timedelta(seconds=60)
# After a failed round (NATS or Postgres away), try again this much later (real time).
RETRY_S = 1.0

OnQueued = Callable[[str], Awaitable[None]]


class Clock(Protocol):
    def now(self) -> datetime: ...

    async def sleep_until(self, when: datetime) -> None:
        """Return at `when` (the caller cancels it to wake early)."""


class RealClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, when: datetime) -> None:
        await asyncio.sleep(max(0.0, (when - self.now()).total_seconds()))


def fire_job_id(schedule_id: str, fire: datetime) -> str:
    return ids.new_id(at=fire, seed=f"{schedule_id}@{fire.isoformat()}")


class Scheduler:
    def __init__(
        self,
        pool: asyncpg.Pool,
        js: JetStreamContext,
        clock: Clock,
        on_queued: OnQueued | None = None,
        *,
        nc: NATS | None = None,
    ) -> None:
        self.pool = pool
        self.js = js
        self.nc = nc
        """Where the dispatcher says why queued jobs wait (watch.fail_stale_checks)."""
        self.clock = clock
        self.changed = asyncio.Event()
        # Called with the job id right after a fire time's job is appended, before the
        # scheduler records it: tests crash the scheduler here.
        self.on_queued = on_queued

    async def schedules(self) -> list[ScheduleRow]:
        async with self.pool.acquire() as conn:
            return await store.enabled_schedules(conn)

    async def missed(self, s: ScheduleRow, at: datetime, reason: str) -> None:
        """One `schedule.missed` for fire time `at` (however many instances say it)."""
        log.warning("schedule missed: %s", reason, extra={"schedule_id": s.id, "fire_at": at.isoformat()})
        data = ScheduleFireData(schedule_id=s.id, name=s.name, fire_at=at, reason=reason)
        await bus.publish(self.js, ScheduleMissed(at=self.clock.now(), data=data), msg_id=f"missed:{s.id}:{at}")

    async def fire(self, s: ScheduleRow, at: datetime) -> str | None:
        """Queue the job of fire time `at`; its id, or None when the queue rules refused it."""
        attributes = {"borgflow.schedule_id": s.id, "borgflow.fire_at": at.isoformat()}
        with tracing.tracer().start_as_current_span("schedule.fire", attributes=attributes):
            job_id = await self._fire(s, at)
        metrics.SCHEDULE_FIRES.labels(outcome="queued" if job_id else "refused").inc()
        return job_id

    async def _fire(self, s: ScheduleRow, at: datetime) -> str | None:
        job_id = fire_job_id(s.id, at)
        if await bus.last_job_seq(self.js, job_id) > 0:
            # Queued already: by another instance, or by us before a restart (which may
            # have died before saying so).
            await self.fired(s, at, job_id)
            return job_id
        origin = Origin(
            trigger="schedule",
            schedule_id=s.id,
            job_id=job_id,
            requested_by=f"schedule {s.name}",
            created_at=self.clock.now(),
            msg_id=f"schedule:{s.id}:{at.isoformat()}",
        )
        try:
            async with self.pool.acquire() as conn:
                await submit(conn, self.js, parse_request(dict(s.job)), origin)
        except (InvalidRequest, Rejected) as e:
            if await bus.last_job_seq(self.js, job_id) > 0:
                return job_id  # another instance queued it first, and its job is what refused ours
            await self.missed(s, at, f"the scheduled {s.job.get('type', 'job')} was not queued: {e.detail}")
            return None
        if self.on_queued is not None:
            await self.on_queued(job_id)
        await self.fired(s, at, job_id)
        log.info("fired", extra={"schedule_id": s.id, "job_id": job_id, "fire_at": at.isoformat()})
        return job_id

    async def fired(self, s: ScheduleRow, at: datetime, job_id: str) -> None:
        """One `schedule.fired` for fire time `at`: the message id de-duplicates a concurrent
        second say, the look at the stream a late one."""
        try:
            last = decode((await self.js.get_last_msg(SCHEDULES, f"borgflow.schedules.{s.id}.fired")).data or b"")
        except (NotFoundError, msgspec.MsgspecError):
            last = None
        if isinstance(last, ScheduleFired) and last.data.fire_at == at:
            return
        data = ScheduleFireData(schedule_id=s.id, name=s.name, fire_at=at, job_id=job_id)
        await bus.publish(self.js, ScheduleFired(at=self.clock.now(), data=data), msg_id=f"fired:{s.id}:{at}")

    async def handle(self, s: ScheduleRow, d: Due) -> None:
        """Act on one schedule's due fire times: one missed report, at most one run."""
        if d.missed and d.last_missed is not None:
            await self.missed(s, d.last_missed, d.missed_reason())
        job_id = await self.fire(s, d.fire) if d.fire is not None else None
        newest = d.newest
        if newest is not None:
            async with self.pool.acquire() as conn:
                await store.record_fire(conn, s.id, newest, job_id)

    async def run_due(self) -> datetime | None:
        """Queue what is due now; returns the next fire time of any schedule."""
        now = self.clock.now()
        upcoming: list[datetime] = []
        for s in await self.schedules():
            try:
                d = due(s.timing, s.since, now, max(s.catch_up_s, GRACE_S))
                upcoming.append(s.timing.next_after(now))
            except BadSchedule as e:
                log.warning("skipping a bad schedule: %s", e.detail, extra={"schedule_id": s.id})
                continue
            try:
                await self.handle(s, d)
            except Exception as e:
                # One schedule's trouble (NATS away, a job that breaks submit) must not hold
                # up the others; its fire time is not recorded, so the retry redoes it.
                log.warning("schedule not handled, retrying: %s", e, exc_info=True, extra={"schedule_id": s.id})
                upcoming.append(now + timedelta(seconds=RETRY_S))
        return min(upcoming) if upcoming else None

    async def tick(self) -> datetime:
        """One round of the active scheduler; returns when it must wake next."""
        nxt = await self.run_due()
        now = self.clock.now()
        wake = [now + TICK]
        if nxt is not None:
            wake.append(nxt)
        await watch.fail_stale_checks(self.pool, self.js, now, self.nc)
        deadline = await watch.raise_overdue(self.pool, self.js, now)
        if deadline is not None:
            wake.append(deadline)
        return min(wake)

    async def loop(self, stop: asyncio.Event, listener: asyncpg.Connection, lease: Lease | None = None) -> None:
        await listener.add_listener("borgflow_schedules", lambda *_: self.changed.set())
        if lease is not None:
            lease.on_acquire = self.changed.set
        try:
            while not stop.is_set():
                self.changed.clear()
                standby = lease is not None and not lease.held.is_set()
                waits: list[asyncio.Future[object]] = [asyncio.ensure_future(e.wait()) for e in (stop, self.changed)]
                if not standby:
                    # The active one: queue what is due, then sleep to the next fire time
                    # (or less, after a failed round). A standby only waits to take over
                    # (the lease sets `changed`). The round itself is never interrupted.
                    until = await self._round()
                    nap = self.clock.sleep_until(until) if until is not None else asyncio.sleep(RETRY_S)
                    waits.append(asyncio.ensure_future(nap))
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for f in waits:
                    f.cancel()
                await asyncio.gather(*waits, return_exceptions=True)
        finally:
            await listener.close()

    async def _round(self) -> datetime | None:
        """A tick; the next wake-up, or None after a failed round."""
        try:
            return await self.tick()
        except Exception as e:  # NATS or Postgres briefly away: nothing is lost, the next round redoes it
            log.warning("scheduler round failed, retrying: %s", e, exc_info=True)
            return None


async def run(
    settings: Settings, stop: asyncio.Event, clock: Clock | None = None, *, on_queued: OnQueued | None = None
) -> None:
    """Schedule until `stop` is set."""
    pool = await db.create_pool(settings.database_url, min_size=1, max_size=4)
    nc = await bus.connect(settings.nats_url, "scheduler")
    try:
        js = nc.jetstream()
        await bus.patiently("creating the streams", lambda: ensure_streams(js, replicas=settings.stream_replicas))
        listener = await db.connect(settings.database_url)
        lease = Lease(js, "scheduler")
        keeper = asyncio.create_task(resilient("scheduler-lease", lambda: lease.keep(stop)), name="scheduler-lease")

        def problem() -> str | None:
            if not nc.is_connected:
                return "NATS is not connected"
            return "the Postgres connection it listens on is closed" if listener.is_closed() else None

        try:
            with probes.registered("scheduler", problem):
                await Scheduler(pool, js, clock or RealClock(), on_queued, nc=nc).loop(stop, listener, lease)
        finally:
            if not stop.is_set():  # cancelled, or the loop failed: the keeper would renew forever
                keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
    finally:
        await nc.close()
        await pool.close()

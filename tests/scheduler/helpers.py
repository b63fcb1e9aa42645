"""What scheduler tests share: a clock they move, schedule rows, reading what was appended."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from nats.js import JetStreamContext

from shared import bus, ids
from shared import events as ev


class FakeClock:
    """The scheduler's clock, moved by the test: sleepers wake when it passes their time."""

    def __init__(self, now: datetime) -> None:
        self._now = now
        self._moved = asyncio.Condition()

    def now(self) -> datetime:
        return self._now

    async def sleep_until(self, when: datetime) -> None:
        async with self._moved:
            await self._moved.wait_for(lambda: self._now >= when)

    async def set(self, now: datetime) -> None:
        async with self._moved:
            self._now = now
            self._moved.notify_all()

    async def advance(self, by: timedelta) -> None:
        await self.set(self._now + by)


class Running:
    """Services started as tasks, each with its own stop event; all stopped at the end."""

    def __init__(self) -> None:
        self.started: list[tuple[asyncio.Task[None], asyncio.Event]] = []

    def start(self, service: Callable[[asyncio.Event], Awaitable[None]]) -> tuple[asyncio.Task[None], asyncio.Event]:
        stop = asyncio.Event()
        task = asyncio.ensure_future(service(stop))
        self.started.append((task, stop))
        return task, stop

    async def kill(self, task: asyncio.Task[None], stop: asyncio.Event) -> None:
        """Stop a service where it is, as a crash would (its `finally` blocks still run)."""
        task.cancel()
        stop.set()
        await asyncio.gather(task, return_exceptions=True)

    async def stop_all(self, timeout: float = 15) -> None:
        """Stop every service; fail naming any that did not stop in time or ended with an error."""
        for _, stop in self.started:
            stop.set()
        tasks = [t for t, _ in self.started]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        stuck = [f"{t.get_coro()!r} at {t.get_stack(limit=5)!r}" for t in pending]
        for t in pending:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if stuck:
            raise AssertionError(f"services did not stop within {timeout}s: {stuck}")
        for t in tasks:
            if not t.cancelled() and t.exception() is not None:
                raise AssertionError(f"{t.get_coro()!r} ended with an error") from t.exception()


async def add_schedule(
    conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy,
    job: Mapping[str, object],
    cron: str = "",
    *,
    created_at: datetime,
    interval_s: int | None = None,
    catch_up_s: int = 3600,
    last_fire_at: datetime | None = None,
    enabled: bool = True,
    name: str = "nightly",
) -> str:
    sid = ids.new_id()
    await conn.execute(
        "INSERT INTO schedules (id, name, cron, interval_s, timezone, catch_up_s, job, created_at, last_fire_at,"
        " enabled) VALUES ($1, $2, $3, $4, 'UTC', $5, $6, $7, $8, $9)",
        sid,
        name,
        cron,
        interval_s,
        catch_up_s,
        dict(job),
        created_at,
        last_fire_at,
        enabled,
    )
    return sid


async def stream_events(js: JetStreamContext, stream: str) -> list[ev.AnyEvent]:
    """Every event in `stream`, in order."""
    info = await js.stream_info(stream)
    out: list[ev.AnyEvent] = []
    for seq in range((info.state.first_seq or 1), (info.state.last_seq or 0) + 1):
        msg = await js.get_msg(stream, seq)
        out.append(ev.decode(msg.data or b""))
    return out


async def queued_for(js: JetStreamContext, schedule_id: str) -> list[ev.JobSpec]:
    return [
        e.data
        for e in await stream_events(js, "BORGFLOW_JOBS")
        if isinstance(e, ev.JobQueued) and e.data.schedule_id == schedule_id
    ]


async def schedule_events(js: JetStreamContext, schedule_id: str, kind: type[Any]) -> list[Any]:
    return [
        e
        for e in await stream_events(js, "BORGFLOW_SCHEDULES")
        if isinstance(e, kind) and e.data.schedule_id == schedule_id
    ]


async def last_fire_at(pool: asyncpg.Pool, schedule_id: str) -> datetime | None:
    async with pool.acquire() as conn:
        return await conn.fetchval("SELECT last_fire_at FROM schedules WHERE id = $1", schedule_id)  # type: ignore[no-any-return]


async def backup_history(
    js: JetStreamContext, spec: ev.JobSpec, outcome: type[ev.Outcome] | None, finished: datetime
) -> None:
    """A backup queued a minute before `finished`, run, and ended with `outcome` (None: left running)."""
    j = spec.id
    start = finished - timedelta(minutes=1)
    await bus.publish(js, ev.JobQueued(job_id=j, data=spec, at=start))
    await bus.publish(js, ev.JobSent(job_id=j, data=ev.SentData(agent=spec.agent), at=start))
    await bus.publish(js, ev.JobStarted(job_id=j, data=ev.StartedData(agent=spec.agent), at=start))
    if outcome is not None:
        await bus.publish(js, outcome(job_id=j, at=finished))

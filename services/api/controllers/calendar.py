"""GET /api/calendar: what schedules did (their jobs) and will do (fire times), in a time range."""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
from litestar import Controller, get
from litestar.params import Parameter

from services.api import schedule_queries
from services.api.auth import READ, Principal, project_scope
from services.api.controllers.schedules import timing_of
from services.api.errors import BadRequest, Invalid
from services.api.runtime import Runtime
from services.api.schemas import Calendar, CalendarFire, CalendarJob, CalendarMissed

DEFAULT_SPAN = timedelta(days=7)  # each side of now
MAX_SPAN = timedelta(days=92)
MAX_FIRES = 500
MAX_JOBS = 2000
# A fire this recent may not have queued its job yet: it is not called missed.
MISSED_GRACE = timedelta(minutes=2)
# Times a calendar may ask about: far from the ends of what datetime and cron arithmetic hold.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
# A microsecond: `between` starts strictly after, the range includes its start.
_TICK = timedelta(microseconds=1)


def parse_instant(value: str | None, field: str) -> datetime | None:
    """An ISO 8601 time (UTC when it has no zone); 400 naming the field otherwise."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    # An unencoded `+01:00` arrives as ` 01:00`: read the last space as the plus it was.
    candidates = [text] + ([text[::-1].replace(" ", "+", 1)[::-1]] if " " in text else [])
    for candidate in candidates:
        try:
            at = datetime.fromisoformat(candidate)
            at = (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC)
        except (ValueError, OverflowError):
            continue
        if not EARLIEST <= at <= LATEST:
            raise BadRequest(f"{field}: {value!r} is not between {EARLIEST.year} and {LATEST.year}", field)
        return at
    raise BadRequest(f"{field}: {value!r} is not an ISO 8601 time (e.g. 2026-01-31T00:00:00Z)", field)


def upcoming(schedules: Sequence[asyncpg.Record], start: datetime, end: datetime) -> tuple[list[CalendarFire], bool]:
    """Fire times of `schedules` in [start, end]: the earliest MAX_FIRES, and whether more exist."""
    fires: list[CalendarFire] = []
    for s in schedules:
        try:
            times = timing_of(s).between(start - _TICK, end, MAX_FIRES + 1)
        except ValueError:  # a stored cron this croniter no longer reads: it shows no fires
            continue
        job_type = s["job"].get("type") if isinstance(s["job"], dict) else None
        fires += [CalendarFire(at=t, schedule_id=s["id"], schedule_name=s["name"], type=job_type) for t in times]
    fires.sort(key=lambda f: (f.at, f.schedule_id))
    return fires[:MAX_FIRES], len(fires) > MAX_FIRES


def missed_runs(
    schedules: Sequence[asyncpg.Record], jobs: Sequence[asyncpg.Record], start: datetime, now: datetime
) -> tuple[list[CalendarMissed], bool]:
    """Past fire times in [start, now - grace] after which the schedule queued no job before its
    next fire. Only since the schedule was last changed: its earlier timing may have differed."""
    queued: dict[str, list[datetime]] = {}
    for j in jobs:
        queued.setdefault(j["schedule_id"], []).append(j["created_at"])
    for times in queued.values():
        times.sort()  # searched by bisection: a minutely schedule has thousands of both
    out: list[CalendarMissed] = []
    for s in schedules:
        since = max(start, s["updated_at"], s["created_at"])
        until = now - MISSED_GRACE
        if until <= since:
            continue
        try:
            times = timing_of(s).between(since - _TICK, until, MAX_FIRES + 1)
        except ValueError:  # a stored cron this croniter no longer reads: nothing to say
            continue
        created = queued.get(s["id"], [])
        job_type = s["job"].get("type") if isinstance(s["job"], dict) else None
        for i, t in enumerate(times):
            upto = times[i + 1] if i + 1 < len(times) else now
            first = bisect.bisect_left(created, t)  # the first job queued at or after this fire
            if first == len(created) or created[first] >= upto:
                out.append(CalendarMissed(at=t, schedule_id=s["id"], schedule_name=s["name"], type=job_type))
    out.sort(key=lambda m: (m.at, m.schedule_id))
    return out[:MAX_FIRES], len(out) > MAX_FIRES


class CalendarController(Controller):
    path = "/api/calendar"
    tags = ("schedules",)

    @get(opt={"permission": READ}, cache=False)
    async def calendar(
        self,
        rt: Runtime,
        principal: Principal,
        from_: str | None = Parameter(query="from", default=None),
        to: str | None = None,
        missed: bool = False,
    ) -> Calendar:
        """Jobs schedules queued in the range, then fire times still to come (from 7 days ago to 7 days on).

        `missed=true` adds the past fire times of enabled schedules that queued no job before their
        next fire (`kind: missed`), counted from the schedule's last change."""
        now = datetime.now(UTC)
        since = parse_instant(from_, "from") or now - DEFAULT_SPAN
        until = parse_instant(to, "to") or now + DEFAULT_SPAN
        if until < since:
            raise Invalid("to: the range ends before it starts", "to")
        if until - since > MAX_SPAN:
            raise Invalid(f"to: the range is at most {MAX_SPAN.days} days long", "to")
        project = project_scope(principal)
        jobs = await schedule_queries.scheduled_jobs(rt.pool, since, until, MAX_JOBS + 1, project)
        fires: list[CalendarFire] = []
        more_fires = False
        start = max(since, now)
        schedules = None
        if start <= until:
            schedules = await schedule_queries.enabled_schedules(rt.pool, project)
            # Cron arithmetic for many schedules over three months is CPU work: off the loop.
            fires, more_fires = await asyncio.to_thread(upcoming, schedules, start, until)
        gone: list[CalendarMissed] = []
        more_missed = False
        if missed and since < now:
            if schedules is None:
                schedules = await schedule_queries.enabled_schedules(rt.pool, project)
            gone, more_missed = await asyncio.to_thread(missed_runs, schedules, jobs, since, min(now, until))
        items: list[CalendarJob | CalendarFire | CalendarMissed] = [
            CalendarJob(
                at=j["created_at"],
                schedule_id=j["schedule_id"],
                schedule_name=j["schedule_name"],
                job_id=j["id"],
                type=j["type"],
                status=j["status"],
            )
            for j in jobs[:MAX_JOBS]
        ]
        items += fires
        items += gone
        items.sort(key=lambda i: i.at)
        return Calendar(items=items, truncated=len(jobs) > MAX_JOBS or more_fires or more_missed)

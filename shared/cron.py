"""Cron arithmetic shared by the scheduler (when to fire) and the api (next_runs, validation)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, croniter


class BadSchedule(ValueError):
    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field
        self.detail = detail


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise BadSchedule("timezone", f"timezone: unknown time zone {name!r}") from e


def validate(cron: str, tz: str) -> None:
    zone(tz)
    if not croniter.is_valid(cron):
        raise BadSchedule("cron", f"cron: {cron!r} is not a valid cron expression (e.g. '0 3 * * *')")


def fires_after(cron: str, tz: str, after: datetime, n: int) -> list[datetime]:
    """The next `n` fire times strictly after `after`, in UTC.

    When clocks go back, a wall time that happens twice fires once (the first);
    when they go forward, a skipped wall time fires at the first moment after it.
    """
    z = zone(tz)
    try:
        it = croniter(cron, after.astimezone(z))
    except (CroniterBadCronError, ValueError) as e:
        raise BadSchedule("cron", f"cron: {e}") from e
    out: list[datetime] = []
    last_wall: datetime | None = None
    while len(out) < n:
        t: datetime = it.get_next(datetime)
        wall = t.replace(tzinfo=None)
        if last_wall is not None and wall == last_wall:
            continue
        last_wall = wall
        out.append(t.astimezone(UTC))
    return out


def next_fire(cron: str, tz: str, after: datetime) -> datetime:
    return fires_after(cron, tz, after, 1)[0]


@dataclass(frozen=True)
class Due:
    """What to do about a schedule at `now`."""

    fire: datetime | None  # run this fire time now
    missed: list[datetime]  # fire times that passed unrun and are too old to run


def due(cron: str, tz: str, since: datetime, now: datetime, catch_up_s: float, limit: int = 100) -> Due:
    """Fire times in (since, now]: the latest one runs if within `catch_up_s`, the rest are missed.

    Never a burst: however long the scheduler was down, at most one run.
    """
    passed: list[datetime] = []
    cursor = since
    while len(passed) < limit:
        t = next_fire(cron, tz, cursor)
        if t > now:
            break
        passed.append(t)
        cursor = t
    if not passed:
        return Due(fire=None, missed=[])
    latest = passed[-1]
    if now - latest <= timedelta(seconds=catch_up_s):
        return Due(fire=latest, missed=passed[:-1])
    return Due(fire=None, missed=passed)

"""When a schedule fires: cron (in a time zone) or a fixed interval.

Pure arithmetic, no I/O and no clock: every function takes the times it reasons about.
The scheduler fires by it and the api shows `next_runs` and the calendar by it, so the
two can never disagree.

A cron schedule follows shared.cron (DST handled: a repeated wall time fires once, a
skipped one fires at the first moment after it). An interval schedule fires at
`anchor + k·interval_s` for k ≥ 1, where the anchor is the schedule's creation: absolute
seconds, so "every 7 days" stays 7×24 h apart across a DST change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from croniter import CroniterBadCronError, croniter

from shared.cron import BadSchedule, fires_after, validate, zone

# How many fire times one look at a schedule walks through, at most. Past that (a
# per-second schedule after an hour of downtime) it jumps straight to the latest.
MAX_SCAN = 2000


@dataclass(frozen=True, kw_only=True)
class Timing:
    """A schedule's fire times: `interval_s` when set, else `cron` in `timezone`."""

    cron: str = ""
    timezone: str = "UTC"
    interval_s: int | None = None
    anchor: datetime

    def validate(self) -> None:
        """BadSchedule naming the field when this timing can never fire."""
        if self.interval_s is not None:
            if self.interval_s <= 0:
                raise BadSchedule("interval_s", "interval_s must be a positive number of seconds")
            return
        if not self.cron:
            raise BadSchedule("cron", "cron: a schedule needs a cron expression or an interval_s")
        validate(self.cron, self.timezone)

    @property
    def step(self) -> timedelta:
        assert self.interval_s is not None
        return timedelta(seconds=self.interval_s)

    def fires_after(self, after: datetime, n: int) -> list[datetime]:
        """The next `n` fire times strictly after `after`, in UTC."""
        if self.interval_s is None:
            return fires_after(self.cron, self.timezone, after, n)
        k = max(1, (after - self.anchor) // self.step + 1)
        return [(self.anchor + (k + i) * self.step).astimezone(UTC) for i in range(n)]

    def next_after(self, after: datetime) -> datetime:
        return self.fires_after(after, 1)[0]

    def latest_before(self, t: datetime) -> datetime | None:
        """The last fire time strictly before `t` (None when there is none)."""
        if self.interval_s is not None:
            k = (t - self.anchor) // self.step
            if (t - self.anchor) % self.step == timedelta(0):
                k -= 1
            return (self.anchor + k * self.step).astimezone(UTC) if k >= 1 else None
        try:
            prev: datetime = croniter(self.cron, t.astimezone(zone(self.timezone))).get_prev(datetime)
        except (CroniterBadCronError, ValueError) as e:
            raise BadSchedule("cron", f"cron: {e}") from e
        return prev.astimezone(UTC)

    def latest_at_or_before(self, t: datetime) -> datetime | None:
        """The last fire time at or before `t`."""
        prev = self.latest_before(t)
        after = self.next_after(prev if prev is not None else self.anchor)
        if after <= t:
            return after
        return prev

    def between(self, since: datetime, until: datetime, limit: int = MAX_SCAN) -> list[datetime]:
        """Fire times in (since, until], oldest first, at most `limit` of them."""
        out: list[datetime] = []
        cursor = since
        while len(out) < limit:
            batch = self.fires_after(cursor, min(64, limit - len(out)))
            for t in batch:
                if t > until:
                    return out
                out.append(t)
            cursor = batch[-1]
        return out

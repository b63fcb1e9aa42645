"""What is due after downtime: at most one catch-up run, the rest counted as missed.

Pure: it takes the schedule's timing and the times it reasons about.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.timing import MAX_SCAN, Timing


@dataclass(frozen=True)
class Due:
    """What to do about a schedule at `now`."""

    fire: datetime | None = None
    """Run this fire time now (the latest one, when it is inside the catch-up window)."""
    missed: int = 0
    """Fire times that passed unrun: too old to run, or older than the one that runs."""
    last_missed: datetime | None = None
    at_least: bool = False
    """`missed` is a lower bound: there were more than the scheduler counts."""

    @property
    def newest(self) -> datetime | None:
        """The latest fire time this decision handles (the schedule's new `last_fire_at`)."""
        return self.fire or self.last_missed

    def missed_reason(self) -> str:
        count = f"more than {self.missed}" if self.at_least else str(self.missed)
        return f"{count} fire time(s) passed while the scheduler was not running"


def due(timing: Timing, since: datetime, now: datetime, catch_up_s: float, limit: int = MAX_SCAN) -> Due:
    """Fire times in (since, now]: the latest runs if within `catch_up_s`, the rest are missed.

    Never a burst: however long the scheduler was down, at most one run and one
    count of the missed ones.
    """
    passed = timing.between(since, now, limit)
    if not passed:
        return Due()
    at_least = len(passed) >= limit and timing.next_after(passed[-1]) <= now
    if at_least:
        # Too many to walk: jump to the latest and the one before it.
        latest = timing.latest_at_or_before(now) or passed[-1]
        before = timing.latest_before(latest)
    else:
        latest = passed[-1]
        before = passed[-2] if len(passed) > 1 else None
    if now - latest <= timedelta(seconds=catch_up_s):
        return Due(fire=latest, missed=len(passed) - 1, last_missed=before, at_least=at_least)
    return Due(missed=len(passed), last_missed=latest, at_least=at_least)

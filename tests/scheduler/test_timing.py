"""Fire times of cron and interval schedules, and what is due after downtime (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.scheduler.timing import Due, due
from shared.cron import BadSchedule
from shared.timing import Timing

ANCHOR = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)
WEEK = 7 * 86_400


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def every(seconds: int, anchor: datetime = ANCHOR) -> Timing:
    return Timing(interval_s=seconds, anchor=anchor)


def cron(expr: str, tz: str = "UTC") -> Timing:
    return Timing(cron=expr, timezone=tz, anchor=ANCHOR)


def test_an_interval_fires_at_creation_plus_whole_intervals() -> None:
    t = every(WEEK)
    assert t.fires_after(ANCHOR, 2) == [ANCHOR + timedelta(days=7), ANCHOR + timedelta(days=14)]
    # From any point: the next multiple, never the anchor itself, never one before it.
    assert t.fires_after(ANCHOR + timedelta(days=8), 1) == [ANCHOR + timedelta(days=14)]
    assert t.fires_after(ANCHOR - timedelta(days=30), 1) == [ANCHOR + timedelta(days=7)]
    assert t.fires_after(ANCHOR + timedelta(days=14), 1) == [ANCHOR + timedelta(days=21)]


def test_an_interval_keeps_absolute_time_across_dst() -> None:
    # Europe/Berlin leaves summer time on 2026-10-25: the interval is 24 h of real time regardless.
    t = Timing(interval_s=86_400, timezone="Europe/Berlin", anchor=utc(2026, 10, 24, 1))
    assert t.fires_after(utc(2026, 10, 24, 1), 2) == [utc(2026, 10, 25, 1), utc(2026, 10, 26, 1)]


def test_latest_fire_before_and_at() -> None:
    t = every(3600)
    assert t.latest_before(ANCHOR + timedelta(hours=3)) == ANCHOR + timedelta(hours=2)
    assert t.latest_at_or_before(ANCHOR + timedelta(hours=3)) == ANCHOR + timedelta(hours=3)
    assert t.latest_at_or_before(ANCHOR + timedelta(minutes=59)) is None
    c = cron("0 * * * *")
    assert c.latest_before(utc(2026, 11, 23, 10)) == utc(2026, 11, 23, 9)
    assert c.latest_at_or_before(utc(2026, 11, 23, 10)) == utc(2026, 11, 23, 10)
    assert c.latest_at_or_before(utc(2026, 11, 23, 10, 30)) == utc(2026, 11, 23, 10)


def test_interval_downtime_runs_the_latest_once() -> None:
    t = every(3600)
    now = ANCHOR + timedelta(hours=5, minutes=10)
    d = due(t, since=ANCHOR + timedelta(hours=1), now=now, catch_up_s=3600)
    assert d == Due(fire=ANCHOR + timedelta(hours=5), missed=3, last_missed=ANCHOR + timedelta(hours=4), at_least=False)
    assert d.newest == ANCHOR + timedelta(hours=5)


def test_a_week_long_interval_missed_past_its_window_is_one_report() -> None:
    d = due(every(WEEK), since=ANCHOR, now=ANCHOR + timedelta(days=7, hours=3), catch_up_s=3600)
    assert d.fire is None and d.missed == 1 and d.last_missed == ANCHOR + timedelta(days=7)
    assert d.missed_reason() == "1 fire time(s) passed while the scheduler was not running"


def test_nothing_due_before_the_first_fire() -> None:
    assert due(every(WEEK), since=ANCHOR, now=ANCHOR + timedelta(days=6), catch_up_s=3600) == Due()


def test_a_long_downtime_of_a_frequent_schedule_is_bounded_work_and_one_decision() -> None:
    # A per-second schedule down for a day: 86,400 passed fire times, never walked one by one.
    t = cron("* * * * * *")
    now = utc(2026, 11, 23, 12, 0, 0)
    d = due(t, since=now - timedelta(days=1), now=now, catch_up_s=5, limit=500)
    assert d.fire == now and d.last_missed == now - timedelta(seconds=1)
    assert d.at_least and d.missed == 499 and d.missed_reason().startswith("more than 499")
    d = due(t, since=now - timedelta(days=1), now=now + timedelta(milliseconds=500), catch_up_s=0, limit=500)
    assert d.fire is None and d.last_missed == now and d.at_least


def test_interval_schedules_validate() -> None:
    every(60).validate()
    cron("0 3 * * *").validate()
    with pytest.raises(BadSchedule) as e:
        every(0).validate()
    assert e.value.field == "interval_s"
    with pytest.raises(BadSchedule) as e:
        Timing(anchor=ANCHOR).validate()
    assert e.value.field == "cron"

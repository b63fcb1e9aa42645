"""Fire-time arithmetic: time zones, DST, catch-up without bursts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.cron import BadSchedule, due, fires_after, validate


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def test_cron_in_a_time_zone() -> None:
    # 03:00 in Berlin is 02:00 UTC in winter.
    assert fires_after("0 3 * * *", "Europe/Berlin", utc(2026, 11, 23, 12), 1) == [utc(2026, 11, 24, 2)]


def test_dst_repeated_hour_fires_once() -> None:
    fires = fires_after("30 2 * * *", "Europe/Berlin", utc(2026, 10, 24, 12), 2)
    assert fires == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]


def test_dst_skipped_hour_still_fires() -> None:
    fires = fires_after("30 2 * * *", "Europe/Berlin", utc(2026, 3, 28, 12), 1)
    assert fires == [utc(2026, 3, 29, 1, 0)]  # 03:00 CEST, the first moment after the gap


def test_downtime_runs_the_latest_once_inside_the_window() -> None:
    d = due("0 * * * *", "UTC", since=utc(2026, 11, 23, 5), now=utc(2026, 11, 23, 9, 10), catch_up_s=3600)
    assert d.fire == utc(2026, 11, 23, 9) and d.missed == [utc(2026, 11, 23, h) for h in (6, 7, 8)]


def test_downtime_past_the_window_runs_nothing() -> None:
    d = due("0 3 * * *", "UTC", since=utc(2026, 11, 20, 3), now=utc(2026, 11, 23, 12), catch_up_s=3600)
    assert d.fire is None and len(d.missed) == 3


@pytest.mark.parametrize(
    ("cron", "tz", "field"), [("61 * * * *", "UTC", "cron"), ("0 3 * * *", "Mars/Base", "timezone")]
)
def test_bad_schedules_name_the_field(cron: str, tz: str, field: str) -> None:
    with pytest.raises(BadSchedule) as e:
        validate(cron, tz)
    assert e.value.field == field

"""The pure figures of repository insight: fill date, storage crossings, backup rates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.insight import backup_rates, free_percent, projected_full_at, storage_crossing

NOW = datetime(2026, 12, 1, tzinfo=UTC)
GB = 1_000_000_000


def daily(used: list[int]) -> list[tuple[datetime, int]]:
    return [(NOW - timedelta(days=len(used) - 1 - i), u) for i, u in enumerate(used)]


def test_usage_that_does_not_grow_has_no_fill_date() -> None:
    assert projected_full_at(daily([50 * GB] * 10), 100 * GB, NOW) is None
    assert projected_full_at(daily([60 * GB, 55 * GB, 50 * GB]), 100 * GB, NOW) is None
    assert projected_full_at(daily([50 * GB]), 100 * GB, NOW) is None
    assert projected_full_at(daily([10 * GB, 20 * GB]), None, NOW) is None


def test_growing_usage_fills_on_the_least_squares_date() -> None:
    # 1 GB a day, 50 GB used now, 100 GB disk: full in 50 days.
    points = daily([41 * GB + i * GB for i in range(10)])
    assert projected_full_at(points, 100 * GB, NOW) == NOW + timedelta(days=50)
    # Noise around the same line gives a date near it.
    noisy = [(at, used + (GB // 4 if i % 2 else -GB // 4)) for i, (at, used) in enumerate(points)]
    when = projected_full_at(noisy, 100 * GB, NOW)
    assert when is not None and abs(when - (NOW + timedelta(days=50))) < timedelta(days=2)


def test_only_the_last_30_days_count() -> None:
    # It shrank long ago (a big prune), and grows since: the old points are not fitted.
    old = [(NOW - timedelta(days=60 + i), 90 * GB) for i in range(5)]
    assert projected_full_at(old + daily([41 * GB + i * GB for i in range(10)]), 100 * GB, NOW) == NOW + timedelta(
        days=50
    )


def test_storage_crossings_fire_once_each_way() -> None:
    assert free_percent(5, 100) == 5.0 and free_percent(None, 100) is None
    assert storage_crossing(5.0, 10.0, was_low=False) == "low"
    assert storage_crossing(4.0, 10.0, was_low=True) is None
    assert storage_crossing(10.0, 10.0, was_low=True) == "recovered"
    assert storage_crossing(50.0, 10.0, was_low=False) is None
    assert storage_crossing(None, 10.0, was_low=True) is None


def test_backup_rates() -> None:
    stats = {"original_size": 1000, "compressed_size": 500, "deduplicated_size": 50, "duration": 2.0}
    assert backup_rates(stats) == {
        "read_bytes_per_s": 500.0,
        "transfer_bytes_per_s": 25.0,
        "compression_ratio": 2.0,
        "dedup_hit_rate": 0.9,
    }
    assert backup_rates({"original_size": 10}) == {}

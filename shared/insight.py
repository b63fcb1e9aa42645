"""Repository insight: what the figures mean, and the pure decisions made from them.

The figures come from borg itself (a backup's `--json` stats, `borg info --json`,
`borg list`) and from the agent's view of the repository's file system; the
executor measures them after a job that changed the repository, the projector
keeps them, the api answers them. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

# The window `projected_full_at` looks back over.
FILL_WINDOW = timedelta(days=30)
# Fill dates further out than this are answered None: no meaningful growth.
HORIZON = timedelta(days=100 * 365)
# The default of a repository's storage_low_percent.
DEFAULT_STORAGE_LOW_PERCENT = 10.0

Crossing = Literal["low", "recovered"]


def ratio(numerator: Any, denominator: Any, digits: int = 3) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is not positive."""
    if not isinstance(numerator, int | float) or not isinstance(denominator, int | float) or denominator <= 0:
        return None
    return round(numerator / denominator, digits)


def backup_rates(stats: Mapping[str, Any]) -> dict[str, float]:
    """A backup's own rates, from its `borg create --json` archive stats and duration.

    - `read_bytes_per_s`: source data read (original size) per second of the backup.
    - `transfer_bytes_per_s`: new data written to the repository (deduplicated size)
      per second: the effective transfer rate.
    - `dedup_hit_rate`: the share of the (compressed) data borg found already in the
      repository, 0..1; 1 means nothing new was stored.
    - `compression_ratio`: original / compressed size.
    A figure borg gave nothing to compute from is left out.
    """
    out: dict[str, float] = {}
    duration = stats.get("duration")
    original = stats.get("original_size")
    compressed = stats.get("compressed_size")
    dedup = stats.get("deduplicated_size")
    figures = {
        "read_bytes_per_s": ratio(original, duration, 1),
        "transfer_bytes_per_s": ratio(dedup, duration, 1),
        "compression_ratio": ratio(original, compressed),
    }
    hit = ratio(dedup, compressed, 4)
    if hit is not None:
        figures["dedup_hit_rate"] = round(max(0.0, 1.0 - hit), 4)
    out.update({k: v for k, v in figures.items() if v is not None})
    return out


def free_percent(disk_free: int | None, disk_total: int | None) -> float | None:
    """How much of the repository's file system is free, in percent; None when unknown."""
    if disk_free is None or not disk_total or disk_total <= 0:
        return None
    return round(100.0 * disk_free / disk_total, 3)


def storage_crossing(free: float | None, threshold: float, was_low: bool) -> Crossing | None:
    """Whether this measurement crosses the repository's storage_low_percent.

    "low" when free space is under the threshold and the last word on the
    repository was not "low"; "recovered" when it is at or above it again after a
    "low"; None otherwise (no figure, or no crossing). So an alert is raised once
    per crossing, however many jobs measure the same state.
    """
    if free is None:
        return None
    if free < threshold and not was_low:
        return "low"
    if free >= threshold and was_low:
        return "recovered"
    return None


def projected_full_at(points: Sequence[tuple[datetime, int]], capacity: int | None, now: datetime) -> datetime | None:
    """When the repository's file system fills, at the pace of the last 30 days; None if it does not grow.

    Policy: take the measurements of disk use (`points`, one per day or more) from
    the 30 days before `now`, fit used = a + b·t by least squares, and if the
    slope b is positive answer the time the line reaches `capacity` (the file
    system's size); a date more than 100 years out is None too. With fewer
    than two points, points all at one time, a slope of zero or below, or no
    known capacity, the answer is None: no growth, no date. A file system
    already at capacity answers its last measurement.
    """
    if not capacity or capacity <= 0:
        return None
    recent = sorted((at, used) for at, used in points if now - FILL_WINDOW <= at <= now)
    if len(recent) < 2:
        return None
    origin = recent[0][0]
    xs = [(at - origin).total_seconds() for at, _ in recent]
    ys = [float(used) for _, used in recent]
    n = len(xs)
    mean_x = sum(xs) / n
    mean_y = sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if sxx == 0:
        return None
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sxx
    if slope <= 0:
        return None
    intercept = mean_y - slope * mean_x
    seconds = (capacity - intercept) / slope
    if seconds > HORIZON.total_seconds():
        return None  # growth too slow to matter (and past what a datetime holds)
    full = origin + timedelta(seconds=seconds)
    last = recent[-1][0]
    return max(full, last)

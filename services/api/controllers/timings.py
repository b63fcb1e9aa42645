"""GET /api/timings: wait and run time percentiles per day and job type, from the read model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from litestar import Controller, get

from services.api.auth import READ, Principal, project_scope
from services.api.errors import BadRequest
from services.api.runtime import Runtime
from services.api.schemas import TimingDay, Timings

MAX_DAYS = 90

# Percentiles in Postgres: the page never downloads the jobs to sort them itself.
_TIMINGS = """
SELECT (finished_at AT TIME ZONE 'UTC')::date AS day, type, count(*) AS jobs,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - created_at)) AS wait_p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - created_at)) AS wait_p95,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at)) AS run_p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at)) AS run_p95
FROM jobs
WHERE finished_at >= $1 AND started_at IS NOT NULL AND ($2::text IS NULL OR project = $2)
GROUP BY 1, 2
ORDER BY 1, 2
"""


def _seconds(value: float | None) -> float:
    # A clock step between hosts can make a start precede its creation: never a negative time.
    return round(max(0.0, float(value or 0.0)), 3)


class TimingsController(Controller):
    path = "/api/timings"
    tags = ("queue",)

    @get(opt={"permission": READ}, cache=False)
    async def timings(self, rt: Runtime, principal: Principal, days: int = 14) -> Timings:
        """Jobs that finished in the last `days` (1 to 90, UTC days, today included), per day and
        type: how many, and the median and 95th percentile of their wait (created to started)
        and run (started to finished) times in seconds. Jobs that never started are left out."""
        if not 1 <= days <= MAX_DAYS:
            raise BadRequest(f"days: {days} is not between 1 and {MAX_DAYS}", "days")
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        since = today - timedelta(days=days - 1)
        rows = await rt.pool.fetch(_TIMINGS, since, project_scope(principal))
        return Timings(
            since=since,
            items=[
                TimingDay(
                    day=r["day"].isoformat(),
                    type=r["type"],
                    jobs=r["jobs"],
                    wait_p50_s=_seconds(r["wait_p50"]),
                    wait_p95_s=_seconds(r["wait_p95"]),
                    run_p50_s=_seconds(r["run_p50"]),
                    run_p95_s=_seconds(r["run_p95"]),
                )
                for r in rows
            ],
        )

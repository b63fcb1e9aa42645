"""The SQL of schedules: their rows, and the jobs they queued (for the calendar)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from services.api.queries import Db

# A schedule with the status of the job it last queued (null when that job is gone).
_SCHEDULE = (
    "SELECT s.id, s.project, s.name, s.cron, s.timezone, s.interval_s, s.enabled, s.catch_up_s, s.job,"
    " s.last_fire_at, s.last_job_id, j.status AS last_job_status, s.created_at, s.updated_at"
    " FROM schedules s LEFT JOIN jobs j ON j.id = s.last_job_id"
)


@dataclass(frozen=True, kw_only=True)
class ScheduleRow:
    """The columns a person sets; the rest the scheduler and the clock do."""

    project: str
    name: str
    cron: str  # "" for an interval schedule
    timezone: str
    interval_s: int | None
    enabled: bool
    catch_up_s: int
    job: dict[str, Any]


async def insert_schedule(db: Db, schedule_id: str, row: ScheduleRow) -> None:
    await db.execute(
        "INSERT INTO schedules (id, project, name, cron, timezone, enabled, catch_up_s, job, interval_s)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        schedule_id,
        row.project,
        row.name,
        row.cron,
        row.timezone,
        row.enabled,
        row.catch_up_s,
        row.job,
        row.interval_s,
    )


async def update_schedule(db: Db, schedule_id: str, row: ScheduleRow) -> bool:
    found = await db.fetchval(
        "UPDATE schedules SET project = $2, name = $3, cron = $4, timezone = $5, enabled = $6, catch_up_s = $7,"
        " job = $8, interval_s = $9, updated_at = now() WHERE id = $1 RETURNING id",
        schedule_id,
        row.project,
        row.name,
        row.cron,
        row.timezone,
        row.enabled,
        row.catch_up_s,
        row.job,
        row.interval_s,
    )
    return found is not None


_SCHEDULE_IN_PROJECT = " WHERE ($1::text IS NULL OR s.project = $1)"


async def schedules(db: Db, project: str | None = None) -> list[asyncpg.Record]:
    return await db.fetch(_SCHEDULE + _SCHEDULE_IN_PROJECT + " ORDER BY s.project, s.name, s.id", project)


async def enabled_schedules(db: Db, project: str | None = None) -> list[asyncpg.Record]:
    return await db.fetch(_SCHEDULE + _SCHEDULE_IN_PROJECT + " AND s.enabled ORDER BY s.id", project)


async def schedule(db: Db, schedule_id: str) -> asyncpg.Record | None:
    return await db.fetchrow(_SCHEDULE + " WHERE s.id = $1", schedule_id)


async def delete_schedule(db: Db, schedule_id: str) -> bool:
    return await db.fetchval("DELETE FROM schedules WHERE id = $1 RETURNING id", schedule_id) is not None


async def scheduled_jobs(
    db: Db, since: datetime, until: datetime, limit: int, project: str | None = None
) -> list[asyncpg.Record]:
    """Jobs a schedule queued, created in [since, until], oldest first, with the schedule's name."""
    return await db.fetch(
        "SELECT j.id, j.created_at, j.schedule_id, s.name AS schedule_name, j.type, j.status"
        " FROM jobs j LEFT JOIN schedules s ON s.id = j.schedule_id"
        " WHERE j.schedule_id IS NOT NULL AND j.created_at >= $1 AND j.created_at <= $2"
        " AND ($4::text IS NULL OR j.project = $4)"
        " ORDER BY j.created_at, j.id LIMIT $3",
        since,
        until,
        limit,
        project,
    )

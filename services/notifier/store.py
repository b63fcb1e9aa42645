"""The notifier's SQL, in one place: targets, the delivery ledger, what the read model knows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.db import Conn


async def targets(conn: Conn) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT id, name, url, events, project FROM notifications ORDER BY id")
    return [dict(r) for r in rows]


async def delivered(conn: Conn, event_id: str) -> set[str]:
    """Targets that already have this event (a redelivered event skips them)."""
    rows = await conn.fetch("SELECT target_id FROM deliveries WHERE event_id = $1 AND ok", event_id)
    return {r["target_id"] for r in rows}


async def record(conn: Conn, event_id: str, target_id: str, key: str, job_id: str | None, error: str | None) -> None:
    """One attempt's result; a success is never overwritten by a later attempt's failure."""
    await conn.execute(
        "INSERT INTO deliveries (event_id, target_id, event_type, job_id, ok, error)"
        " VALUES ($1, $2, $3, $4, $5, $6)"
        " ON CONFLICT (event_id, target_id) DO UPDATE SET at = now(), ok = EXCLUDED.ok, error = EXCLUDED.error"
        " WHERE NOT deliveries.ok",
        event_id,
        target_id,
        key,
        job_id,
        error is None,
        error,
    )


async def schedule_project(conn: Conn, schedule_id: str) -> str | None:
    return await conn.fetchval("SELECT project FROM schedules WHERE id = $1", schedule_id)  # type: ignore[no-any-return]


async def projected_seq(conn: Conn, job_id: str) -> int:
    """How far the read model has applied one job's events (0: not at all)."""
    return int(await conn.fetchval("SELECT last_seq FROM jobs WHERE id = $1", job_id) or 0)


async def earlier_backups(
    conn: Conn, plan_id: str, job_id: str, finished_at: datetime, limit: int
) -> list[tuple[str, datetime]]:
    """(status, finished_at) of the plan's backups that finished before `finished_at`, newest first.

    Cancelled ones are left out: a person stopping a backup says nothing about its health.
    """
    rows = await conn.fetch(
        "SELECT status, finished_at FROM jobs"
        " WHERE plan_id = $1 AND type = 'backup' AND id <> $2 AND finished_at <= $3"
        " AND status IN ('completed', 'warning', 'failed')"
        " ORDER BY finished_at DESC, id DESC LIMIT $4",
        plan_id,
        job_id,
        finished_at,
        limit,
    )
    return [(r["status"], r["finished_at"]) for r in rows]


async def succeeded_between(conn: Conn, plan_id: str, after: datetime | None, until: datetime) -> bool:
    """Whether a backup of the plan succeeded in (after, until]."""
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM jobs WHERE plan_id = $1 AND type = 'backup'"
            " AND status IN ('completed', 'warning') AND finished_at <= $3"
            " AND ($2::timestamptz IS NULL OR finished_at > $2))",
            plan_id,
            after,
            until,
        )
    )

"""The SQL the api runs; schedules have theirs in schedule_queries.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import asyncpg

Db = asyncpg.Pool | asyncpg.Connection


@asynccontextmanager
async def connection(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection, typed as the Connection the shared helpers take."""
    async with pool.acquire() as proxy:
        yield cast(asyncpg.Connection, proxy)


# --------------------------------------------------------------------------- tokens


async def token_by_hash(db: Db, digest: str) -> asyncpg.Record | None:
    return await db.fetchrow(
        "SELECT id, name, role, project FROM tokens WHERE hash = $1 AND revoked_at IS NULL", digest
    )


_TOKEN = "SELECT id, name, role, project, created_at, revoked_at FROM tokens"


async def insert_token(db: Db, *, token_id: str, name: str, role: str, project: str, digest: str) -> asyncpg.Record:
    row = await db.fetchrow(
        "INSERT INTO tokens (id, name, role, project, hash) VALUES ($1, $2, $3, $4, $5)"
        " RETURNING id, name, role, project, created_at, revoked_at",
        token_id,
        name,
        role,
        project,
        digest,
    )
    assert row is not None  # INSERT ... RETURNING answers the row it wrote
    return row


async def tokens(db: Db) -> list[asyncpg.Record]:
    return await db.fetch(_TOKEN + " ORDER BY created_at, id")


async def revoke_token(db: Db, token_id: str) -> bool:
    """Revoke a token (once: a revoked token keeps its first revocation time); False if none."""
    found = await db.fetchval(
        "UPDATE tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 RETURNING id", token_id
    )
    return found is not None


# --------------------------------------------------------------------------- health, settings


async def ping(db: Db) -> None:
    await db.fetchval("SELECT 1")


async def checkpoint(db: Db, name: str) -> int:
    seq = await db.fetchval("SELECT seq FROM projection_checkpoints WHERE name = $1", name)
    return int(seq or 0)


async def system_settings(db: Db) -> dict[str, Any] | None:
    value = await db.fetchval("SELECT value FROM settings WHERE key = 'system'")
    return cast(dict[str, Any] | None, value)


async def lock_settings(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('borgflow:settings'))")


async def put_system_settings(db: Db, value: dict[str, Any]) -> None:
    await db.execute(
        "INSERT INTO settings (key, value) VALUES ('system', $1)"
        " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()",
        value,
    )


# --------------------------------------------------------------------------- repositories

_REPO = (
    "SELECT id, project, name, location, agent, passphrase IS NOT NULL AS has_passphrase,"
    " created_at, updated_at FROM repositories"
)


async def insert_repository(
    db: Db, *, repo_id: str, project: str, name: str, location: str, agent: str, passphrase: str | None
) -> None:
    await db.execute(
        "INSERT INTO repositories (id, project, name, location, agent, passphrase) VALUES ($1, $2, $3, $4, $5, $6)",
        repo_id,
        project,
        name,
        location,
        agent,
        passphrase,
    )


# `project`: only that project's rows; None: every project (see auth.project_scope).
_IN_PROJECT = " WHERE ($1::text IS NULL OR project = $1)"


async def repositories(db: Db, project: str | None = None) -> list[asyncpg.Record]:
    return await db.fetch(_REPO + _IN_PROJECT + " ORDER BY project, name", project)


async def repository(db: Db, repo_id: str) -> asyncpg.Record | None:
    return await db.fetchrow(_REPO + " WHERE id = $1", repo_id)


async def update_repository(db: Db, repo_id: str, changes: dict[str, Any]) -> None:
    """Set the given columns (names come from the api's own schema, never from a client)."""
    if not changes:
        return
    names = list(changes)
    sets = ", ".join(f"{n} = ${i + 2}" for i, n in enumerate(names))
    await db.execute(f"UPDATE repositories SET {sets}, updated_at = now() WHERE id = $1", repo_id, *changes.values())


async def plans_using(db: Db, repo_id: str) -> list[str]:
    rows = await db.fetch("SELECT name FROM plans WHERE repository_id = $1 ORDER BY name", repo_id)
    return [r["name"] for r in rows]


async def lock_repository(conn: asyncpg.Connection, repo_id: str, *, exclusive: bool = False) -> bool:
    """Row-lock a repository for the transaction: FOR UPDATE to delete it, FOR SHARE to refer to it."""
    mode = "UPDATE" if exclusive else "SHARE"
    return await conn.fetchval(f"SELECT id FROM repositories WHERE id = $1 FOR {mode}", repo_id) is not None


async def schedules_using_repository(db: Db, repo_id: str) -> list[str]:
    rows = await db.fetch("SELECT name FROM schedules WHERE job->>'repository_id' = $1 ORDER BY name", repo_id)
    return [r["name"] for r in rows]


async def delete_repository(db: Db, repo_id: str) -> bool:
    return await db.fetchval("DELETE FROM repositories WHERE id = $1 RETURNING id", repo_id) is not None


async def passphrase_of(db: Db, repo_id: str) -> str | None:
    return cast(str | None, await db.fetchval("SELECT passphrase FROM repositories WHERE id = $1", repo_id))


async def archives(db: Db, repo_id: str) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT name, created, stats, job_id FROM archives WHERE repository_id = $1"
        " ORDER BY created DESC NULLS LAST, name",
        repo_id,
    )


# --------------------------------------------------------------------------- plans

_PLAN = "SELECT id, project, name, repository_id, config, created_at, updated_at FROM plans"


async def insert_plan(
    db: Db, *, plan_id: str, project: str, name: str, repository_id: str, config: dict[str, Any]
) -> None:
    await db.execute(
        "INSERT INTO plans (id, project, name, repository_id, config) VALUES ($1, $2, $3, $4, $5)",
        plan_id,
        project,
        name,
        repository_id,
        config,
    )


async def plans(db: Db, project: str | None = None) -> list[asyncpg.Record]:
    return await db.fetch(_PLAN + _IN_PROJECT + " ORDER BY project, name", project)


async def plan(db: Db, plan_id: str) -> asyncpg.Record | None:
    return await db.fetchrow(_PLAN + " WHERE id = $1", plan_id)


async def update_plan(
    db: Db, plan_id: str, *, project: str, name: str, repository_id: str, config: dict[str, Any]
) -> None:
    await db.execute(
        "UPDATE plans SET project = $2, name = $3, repository_id = $4, config = $5, updated_at = now() WHERE id = $1",
        plan_id,
        project,
        name,
        repository_id,
        config,
    )


async def lock_plan(conn: asyncpg.Connection, plan_id: str, *, exclusive: bool = False) -> bool:
    """Row-lock a plan for the transaction: FOR UPDATE to delete it, FOR SHARE to refer to it.

    A schedule is written holding FOR SHARE on its plan and a plan is deleted holding
    FOR UPDATE, so a delete never misses a schedule being created at the same moment.
    """
    mode = "UPDATE" if exclusive else "SHARE"
    return await conn.fetchval(f"SELECT id FROM plans WHERE id = $1 FOR {mode}", plan_id) is not None


async def schedules_using_plan(db: Db, plan_id: str) -> list[str]:
    rows = await db.fetch("SELECT name FROM schedules WHERE job->>'plan_id' = $1 ORDER BY name", plan_id)
    return [r["name"] for r in rows]


async def delete_plan(db: Db, plan_id: str) -> bool:
    return await db.fetchval("DELETE FROM plans WHERE id = $1 RETURNING id", plan_id) is not None


# --------------------------------------------------------------------------- jobs


@dataclass(frozen=True, kw_only=True)
class JobFilter:
    statuses: list[str] | None = None
    types: list[str] | None = None
    agent: str | None = None
    repository_id: str | None = None
    plan_id: str | None = None
    trigger: str | None = None
    q: str | None = None
    project: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    # Keyset position: only jobs strictly older than (created_at, id).
    before: tuple[datetime, str] | None = None
    limit: int = 50


# A job's document with its latest progress: the fold keeps the final progress of a
# finished job; while it runs, progress comes from BORGFLOW_PROGRESS via job_progress.
_DOC = (
    "(CASE WHEN jsonb_typeof(jobs.doc->'progress') IS DISTINCT FROM 'object' AND p.progress IS NOT NULL"
    " THEN jsonb_set(jobs.doc, '{progress}', p.progress) ELSE jobs.doc END) AS doc"
)
_FROM = "jobs LEFT JOIN job_progress p ON p.job_id = jobs.id"


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def jobs(db: Db, f: JobFilter) -> list[asyncpg.Record]:
    """Jobs newest first: (created_at, id, doc) rows, at most `f.limit`."""
    where: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if f.statuses:
        where.append(f"status = ANY({arg(f.statuses)}::text[])")
    if f.types:
        where.append(f"type = ANY({arg(f.types)}::text[])")
    for column in ("agent", "repository_id", "plan_id", "trigger", "project"):
        value = getattr(f, column)
        if value:
            where.append(f"{column} = {arg(value)}")
    if f.q:
        where.append(f"(search ILIKE {arg(_like(f.q))} OR id = {arg(f.q)})")
    if f.since:
        where.append(f"created_at >= {arg(f.since)}")
    if f.until:
        where.append(f"created_at <= {arg(f.until)}")
    if f.before:
        where.append(f"(created_at, id) < ({arg(f.before[0])}, {arg(f.before[1])})")
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    sql = f"SELECT created_at, id, {_DOC} FROM {_FROM}{clause} ORDER BY created_at DESC, id DESC LIMIT {arg(f.limit)}"
    return await db.fetch(sql, *args)


async def job_doc(db: Db, job_id: str) -> dict[str, Any] | None:
    return cast(dict[str, Any] | None, await db.fetchval(f"SELECT {_DOC} FROM {_FROM} WHERE id = $1", job_id))


async def job_project(db: Db, job_id: str) -> str | None:
    return cast(str | None, await db.fetchval("SELECT project FROM jobs WHERE id = $1", job_id))


# `$1`: only jobs of that project; null: every project.
_JOB_IN_PROJECT = "($1::text IS NULL OR jobs.project = $1)"


async def queue_counts(db: Db, project: str | None = None) -> asyncpg.Record:
    # Finished-job counts scan only the last 48 hours through the jobs_finished index.
    row = await db.fetchrow(
        f"""
        SELECT
          (SELECT count(*) FROM jobs WHERE status IN ('queued', 'sent') AND {_JOB_IN_PROJECT}) AS in_queue,
          count(*) FILTER (WHERE status IN ('completed', 'warning')
                           AND finished_at >= now() - interval '24 hours') AS completed_24h,
          count(*) FILTER (WHERE status IN ('completed', 'warning')
                           AND finished_at < now() - interval '24 hours') AS completed_prev_24h,
          count(*) FILTER (WHERE status = 'failed'
                           AND finished_at >= now() - interval '24 hours') AS failed_24h,
          (SELECT avg((doc->>'duration_s')::float8) FROM (
             SELECT doc FROM jobs WHERE finished_at IS NOT NULL AND doc->>'duration_s' IS NOT NULL
             AND {_JOB_IN_PROJECT} ORDER BY finished_at DESC LIMIT 50) last50) AS avg_duration
        FROM jobs
        WHERE finished_at >= now() - interval '48 hours' AND {_JOB_IN_PROJECT}
        """,
        project,
    )
    assert row is not None  # an aggregate always answers one row
    return row


async def running_jobs(db: Db, project: str | None = None) -> list[dict[str, Any]]:
    rows = await db.fetch(
        f"SELECT {_DOC} FROM {_FROM} WHERE status = 'running' AND {_JOB_IN_PROJECT} ORDER BY started_at, id",
        project,
    )
    return [r["doc"] for r in rows]


async def recent_jobs(db: Db, limit: int = 25, project: str | None = None) -> list[dict[str, Any]]:
    rows = await db.fetch(
        f"SELECT {_DOC} FROM {_FROM} WHERE finished_at IS NOT NULL AND {_JOB_IN_PROJECT}"
        " ORDER BY finished_at DESC, id DESC LIMIT $2",
        project,
        limit,
    )
    return [r["doc"] for r in rows]


async def waiting_jobs(db: Db, limit: int = 200, project: str | None = None) -> list[dict[str, Any]]:
    rows = await db.fetch(
        f"SELECT {_DOC} FROM {_FROM} WHERE status IN ('queued', 'sent') AND {_JOB_IN_PROJECT}"
        " ORDER BY created_at, id LIMIT $2",
        project,
        limit,
    )
    return [r["doc"] for r in rows]


# --------------------------------------------------------------------------- agents


async def agents(db: Db, project: str | None = None) -> list[asyncpg.Record]:
    """Every agent (agents belong to no project); `running` only lists jobs of `project` when given."""
    return await db.fetch(
        """
        SELECT a.name, a.host, a.last_seen, a.borg_version, a.slots, a.interval_s,
               a.last_seen >= now() - make_interval(secs => 3 * a.interval_s) AS online,
               coalesce((SELECT array_agg(j.id ORDER BY j.created_at, j.id) FROM jobs j
                         WHERE j.agent = a.name AND j.status IN ('sent', 'running')
                         AND ($1::text IS NULL OR j.project = $1)), '{}') AS running
        FROM agents a
        ORDER BY a.name
        """,
        project,
    )


# --------------------------------------------------------------------------- notifications

_NOTIFICATION = "SELECT id, project, name, url, events, created_at, updated_at FROM notifications"


async def insert_notification(
    db: Db, *, notification_id: str, project: str, name: str, url: str, events: list[str]
) -> None:
    await db.execute(
        "INSERT INTO notifications (id, project, name, url, events) VALUES ($1, $2, $3, $4, $5)",
        notification_id,
        project,
        name,
        url,
        events,
    )


async def update_notification(
    db: Db, notification_id: str, *, project: str, name: str, url: str, events: list[str]
) -> bool:
    found = await db.fetchval(
        "UPDATE notifications SET project = $2, name = $3, url = $4, events = $5, updated_at = now()"
        " WHERE id = $1 RETURNING id",
        notification_id,
        project,
        name,
        url,
        events,
    )
    return found is not None


async def notifications(db: Db, project: str | None = None) -> list[asyncpg.Record]:
    return await db.fetch(_NOTIFICATION + _IN_PROJECT + " ORDER BY project, name, id", project)


async def notification(db: Db, notification_id: str) -> asyncpg.Record | None:
    return await db.fetchrow(_NOTIFICATION + " WHERE id = $1", notification_id)


async def delete_notification(conn: asyncpg.Connection, notification_id: str) -> bool:
    """Delete a target with its delivery history (nothing can show that history any more)."""
    async with conn.transaction():
        found = await conn.fetchval("DELETE FROM notifications WHERE id = $1 RETURNING id", notification_id)
        await conn.execute("DELETE FROM deliveries WHERE target_id = $1", notification_id)
    return found is not None


async def record_delivery(
    db: Db, *, event_id: str, target_id: str, event_type: str, job_id: str | None, error: str | None
) -> None:
    await db.execute(
        "INSERT INTO deliveries (event_id, target_id, event_type, job_id, ok, error) VALUES ($1, $2, $3, $4, $5, $6)",
        event_id,
        target_id,
        event_type,
        job_id,
        error is None,
        error,
    )


async def deliveries(db: Db, target_id: str, limit: int) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT at, event_type, job_id, ok, error FROM deliveries WHERE target_id = $1"
        " ORDER BY at DESC, event_id DESC LIMIT $2",
        target_id,
        limit,
    )

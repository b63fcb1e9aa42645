"""The SQL the api runs; schedules have theirs in schedule_queries.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

import asyncpg

from services.api import jobsearch
from services.api.jobsearch import Search

Db = asyncpg.Pool | asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


@asynccontextmanager
async def connection(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection, typed as the Connection the shared helpers take."""
    async with pool.acquire() as proxy:
        yield cast(asyncpg.Connection, proxy)


# --------------------------------------------------------------------------- metrics


async def job_counts(db: Db) -> dict[str, int]:
    """How many jobs the read model holds, by status (from its counters: no scan)."""
    rows = await db.fetch("SELECT status, sum(n) AS n FROM job_status_counts GROUP BY status")
    return {r["status"]: int(r["n"]) for r in rows}


# --------------------------------------------------------------------------- tokens


async def token_by_hash(db: Db, digest: str) -> asyncpg.Record | None:
    return await db.fetchrow(
        "SELECT id, name, role, project, agent FROM tokens WHERE hash = $1 AND revoked_at IS NULL", digest
    )


_COLUMNS = "id, name, role, project, agent, created_at, revoked_at"
_TOKEN = f"SELECT {_COLUMNS} FROM tokens"


async def insert_token(
    db: Db, *, token_id: str, name: str, role: str, project: str, digest: str, agent: str | None = None
) -> asyncpg.Record:
    row = await db.fetchrow(
        "INSERT INTO tokens (id, name, role, project, hash, agent) VALUES ($1, $2, $3, $4, $5, $6)"
        f" RETURNING {_COLUMNS}",
        token_id,
        name,
        role,
        project,
        digest,
        agent,
    )
    assert row is not None  # INSERT ... RETURNING answers the row it wrote
    return row


async def tokens(db: Db) -> list[asyncpg.Record]:
    return await db.fetch(_TOKEN + " ORDER BY created_at, id")


async def token(db: Db, token_id: str) -> asyncpg.Record | None:
    return await db.fetchrow(_TOKEN + " WHERE id = $1", token_id)


async def enrol_agent(pool: asyncpg.Pool, *, token_id: str, agent: str, digest: str) -> asyncpg.Record | None:
    """A new token bound to `agent`, unless one is live already (None then)."""
    async with pool.acquire() as conn, conn.transaction():
        # Two executors enrolling under one name at once: only the first gets a token.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", "enrol:" + agent)
        if await live_agent_token(conn, agent) is not None:
            return None
        return await insert_token(
            conn, token_id=token_id, name=f"agent {agent}", role="agent", project="default", digest=digest, agent=agent
        )


async def live_agent_token(db: Db, agent: str) -> asyncpg.Record | None:
    """The first live token bound to `agent`, if any."""
    return await db.fetchrow(_TOKEN + " WHERE agent = $1 AND revoked_at IS NULL ORDER BY created_at LIMIT 1", agent)


Revoked = Literal["revoked", "no such token", "last admin"]


async def revoke_token(pool: asyncpg.Pool, token_id: str) -> Revoked:
    """Revoke a token (once: a revoked token keeps its first revocation time), unless it is
    the last live admin token: without one nobody could make tokens or change settings again.

    Admin tokens see every project whatever their `project`, so the last admin is counted
    over the whole system.
    """
    async with pool.acquire() as conn, conn.transaction():
        # Two admins revoking each other at once: one after the other, so the second sees one admin left.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('tokens:last-admin'))")
        row = await conn.fetchrow("SELECT role, revoked_at FROM tokens WHERE id = $1", token_id)
        if row is None:
            return "no such token"
        if row["role"] == "admin" and row["revoked_at"] is None:
            admins = await conn.fetchval("SELECT count(*) FROM tokens WHERE role = 'admin' AND revoked_at IS NULL")
            if admins <= 1:
                return "last admin"
        await conn.execute("UPDATE tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1", token_id)
        return "revoked"


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
    "SELECT id, project, name, location, agent, passphrase_enc IS NOT NULL AS has_passphrase,"
    " created_at, updated_at, storage_low_percent, keep_verified_days FROM repositories"
)


async def insert_repository(
    db: Db,
    *,
    repo_id: str,
    project: str,
    name: str,
    location: str,
    agent: str,
    passphrase: bytes | None,
    storage_low_percent: float = 10.0,
    keep_verified_days: int = 30,
) -> None:
    """`passphrase`: sealed (shared/secretrows.py), never the plain text."""
    await db.execute(
        "INSERT INTO repositories (id, project, name, location, agent, passphrase_enc, storage_low_percent,"
        " keep_verified_days) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        repo_id,
        project,
        name,
        location,
        agent,
        passphrase,
        storage_low_percent,
        keep_verified_days,
    )


# `project`: only that project's rows; None: every project (see auth.project_scope).
_IN_PROJECT = " WHERE ($1::text IS NULL OR project = $1)"


async def repositories(db: Db, project: str | None = None) -> list[asyncpg.Record]:
    return await db.fetch(_REPO + _IN_PROJECT + " ORDER BY project, name", project)


async def repository(db: Db, repo_id: str) -> asyncpg.Record | None:
    return await db.fetchrow(_REPO + " WHERE id = $1", repo_id)


async def repository_stats(db: Db, repo_id: str) -> asyncpg.Record | None:
    """The repository's latest measured figures (projected from the jobs' results)."""
    return await db.fetchrow("SELECT at, job_id, figures FROM repository_stats WHERE repository_id = $1", repo_id)


async def repository_stats_days(db: Db, repo_id: str, days: int) -> list[asyncpg.Record]:
    """The last measurement of each of the repository's last `days` UTC days, oldest first."""
    return await db.fetch(
        "SELECT day, at, figures FROM repository_stats_days WHERE repository_id = $1"
        " AND day > (now() AT TIME ZONE 'UTC')::date - $2::int ORDER BY day",
        repo_id,
        days,
    )


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


async def passphrase_of(db: Db, repo_id: str) -> bytes | None:
    """The sealed passphrase (shared/secretrows.py unseals it)."""
    return cast(bytes | None, await db.fetchval("SELECT passphrase_enc FROM repositories WHERE id = $1", repo_id))


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
    search: Search | None = None  # the typed terms of `q` (services/api/jobsearch.py)
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


def _job_where(f: JobFilter) -> tuple[str, list[Any]]:
    """The WHERE clause of `f` and its arguments."""
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
    if f.search is not None:
        where.extend(jobsearch.conditions(f.search, arg))
    if f.before:
        where.append(f"(created_at, id) < ({arg(f.before[0])}, {arg(f.before[1])})")
    return (" WHERE " + " AND ".join(where)) if where else "", args


async def jobs(db: Db, f: JobFilter) -> list[asyncpg.Record]:
    """Jobs newest first: (created_at, id, doc) rows, at most `f.limit`."""
    clause, args = _job_where(f)
    sql = f"SELECT created_at, id, {_DOC} FROM {_FROM}{clause} ORDER BY created_at DESC, id DESC LIMIT ${len(args) + 1}"
    return await db.fetch(sql, *args, f.limit)


async def job_ids(db: Db, f: JobFilter) -> list[str]:
    """The ids of the jobs `f` matches, newest first, at most `f.limit` (no documents read)."""
    clause, args = _job_where(f)
    rows = await db.fetch(
        f"SELECT id FROM jobs{clause} ORDER BY created_at DESC, id DESC LIMIT ${len(args) + 1}", *args, f.limit
    )
    return [r["id"] for r in rows]


async def status_counts(db: Db, project: str | None = None) -> dict[str, int]:
    """Jobs by status (of `project` when given), from the counters of migration 0005: no scan."""
    rows = await db.fetch(
        "SELECT status, sum(n)::bigint AS n FROM job_status_counts WHERE ($1::text IS NULL OR project = $1)"
        " GROUP BY status",
        project,
    )
    return {r["status"]: int(r["n"]) for r in rows if r["n"]}


async def retry_family(db: Db, job_id: str, limit: int = 100) -> list[dict[str, Any]]:
    """Every attempt of the job's work: back through `retry_of` to the first, then every retry of
    those, oldest first (the index of migration 0011 finds the retries of a job)."""
    rows = await db.fetch(
        """
        WITH RECURSIVE back(id, retry_of, depth) AS (
            SELECT id, doc->>'retry_of', 0 FROM jobs WHERE id = $1
            UNION ALL
            SELECT j.id, j.doc->>'retry_of', b.depth + 1 FROM jobs j JOIN back b ON j.id = b.retry_of
            WHERE b.depth < $2
        ),
        root AS (SELECT id FROM back ORDER BY depth DESC LIMIT 1),
        family(id, depth) AS (
            SELECT id, 0 FROM root
            UNION ALL
            SELECT j.id, f.depth + 1 FROM jobs j JOIN family f ON j.doc->>'retry_of' = f.id WHERE f.depth < $2
        )
        SELECT jobs.doc FROM jobs JOIN (SELECT DISTINCT id FROM family) f USING (id)
        ORDER BY jobs.created_at, jobs.id LIMIT $2
        """,
        job_id,
        limit,
    )
    return [r["doc"] for r in rows]


async def job_doc(db: Db, job_id: str) -> dict[str, Any] | None:
    return cast(dict[str, Any] | None, await db.fetchval(f"SELECT {_DOC} FROM {_FROM} WHERE id = $1", job_id))


async def job_project(db: Db, job_id: str) -> str | None:
    return cast(str | None, await db.fetchval("SELECT project FROM jobs WHERE id = $1", job_id))


# `$1`: only jobs of that project; null: every project.
_JOB_IN_PROJECT = "($1::text IS NULL OR jobs.project = $1)"


async def queue_counts(db: Db, project: str | None = None) -> asyncpg.Record:
    """The Queue page's counts, from the counters the jobs table keeps (migration 0005), so
    they cost the same with a million jobs in the last day as with ten."""
    row = await db.fetchrow(
        """
        SELECT
          (SELECT coalesce(sum(n), 0)::bigint FROM job_status_counts
            WHERE status IN ('queued', 'sent') AND ($1::text IS NULL OR project = $1)) AS in_queue,
          coalesce(sum(n) FILTER (WHERE status IN ('completed', 'warning') AND minute >= day_ago), 0)::bigint
            AS completed_24h,
          coalesce(sum(n) FILTER (WHERE status IN ('completed', 'warning') AND minute < day_ago), 0)::bigint
            AS completed_prev_24h,
          coalesce(sum(n) FILTER (WHERE status = 'failed' AND minute >= day_ago), 0)::bigint AS failed_24h,
          (SELECT avg((doc->>'duration_s')::float8) FROM (
             SELECT doc FROM jobs WHERE finished_at IS NOT NULL AND doc->>'duration_s' IS NOT NULL
             AND ($1::text IS NULL OR jobs.project = $1) ORDER BY finished_at DESC LIMIT 50) last50) AS avg_duration
        FROM job_finish_counts, (SELECT date_trunc('minute', now() - interval '24 hours') AS day_ago) since
        WHERE minute >= date_trunc('minute', now() - interval '48 hours') AND ($1::text IS NULL OR project = $1)
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
    """Every agent (agents belong to no project); `running` and `queued` only count jobs of
    `project` when given."""
    return await db.fetch(
        """
        WITH queued AS (  -- one pass over the queued jobs, not one per agent (10,000 may wait)
            SELECT agent, count(*) AS n FROM jobs
            WHERE status = 'queued' AND ($1::text IS NULL OR project = $1) GROUP BY agent
        )
        SELECT a.name, a.host, a.last_seen, a.borg_version, a.borgflow_version, a.slots, a.interval_s,
               a.last_seen >= now() - make_interval(secs => 3 * a.interval_s) AS online,
               coalesce((SELECT array_agg(j.id ORDER BY j.created_at, j.id) FROM jobs j
                         WHERE j.agent = a.name AND j.status IN ('sent', 'running')
                         AND ($1::text IS NULL OR j.project = $1)), '{}') AS running,
               coalesce(q.n, 0) AS queued
        FROM agents a LEFT JOIN queued q ON q.agent = a.name
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

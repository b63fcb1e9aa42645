"""The projector's SQL: applying a batch, progress and agents; dropping for a rebuild.

Each function runs inside a batch's transaction, under its projection's lock (app.py),
and sets no position: the caller does, in the same transaction.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

import msgspec

from services.projector.domain import BatchResult, RepositoryFigures
from shared import readmodel
from shared.db import Conn
from shared.events import HeartbeatData, Progress

JOBS = readmodel.JOBS_PROJECTION
PROGRESS = "progress"
AGENTS = "agents"

READ_MODEL_TABLES = (
    "jobs",
    "job_progress",
    "archives",
    "verifications",
    "agents",
    "projection_checkpoints",
    "job_status_counts",
    "job_finish_counts",
    "repository_stats",
    "repository_stats_days",
)
# Finished-job counts older than this are not shown anywhere (the Queue page looks back 48 hours).
KEEP_FINISH_COUNTS = "3 days"


async def write_batch(conn: Conn, result: BatchResult) -> None:
    await readmodel.project_jobs(conn, result.changed.values())
    await write_figures(conn, result.figures)
    if result.deleted:
        deleted = sorted(result.deleted)
        await readmodel.delete_jobs(conn, deleted)
        # The progress projection writes job_progress under its own lock: taking it, a
        # progress batch in flight (one holding these jobs' last progress) lands first, and
        # is deleted here, instead of writing the rows back after this commits.
        await readmodel.lock_checkpoint(conn, PROGRESS)
        await conn.execute("DELETE FROM job_progress WHERE job_id = ANY($1::text[])", deleted)
    # Before the archives: a prune later in the batch removes what it pruned with them.
    await write_verifications(conn, result)
    for a in result.archives:
        if a.removed:
            await conn.execute("DELETE FROM archives WHERE repository_id = $1 AND name = $2", a.repository_id, a.name)
            await conn.execute(
                "DELETE FROM verifications WHERE repository_id = $1 AND archive = $2", a.repository_id, a.name
            )
        else:
            await conn.execute(
                "INSERT INTO archives (repository_id, name, created, job_id, stats) VALUES ($1, $2, $3, $4, $5)"
                " ON CONFLICT (repository_id, name) DO UPDATE SET created = EXCLUDED.created,"
                " job_id = EXCLUDED.job_id, stats = EXCLUDED.stats",
                a.repository_id,
                a.name,
                a.created,
                a.job_id,
                a.stats,
            )


async def write_verifications(conn: Conn, result: BatchResult) -> None:
    """Each archive's latest verdict; a check that finished earlier never overwrites a later one."""
    if result.verifications:
        await conn.executemany(
            "INSERT INTO verifications (repository_id, archive, result, verified_at, job_id, detail)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (repository_id, archive) DO UPDATE SET"
            " result = EXCLUDED.result, verified_at = EXCLUDED.verified_at, job_id = EXCLUDED.job_id,"
            " detail = EXCLUDED.detail WHERE verifications.verified_at <= EXCLUDED.verified_at",
            [(v.repository_id, v.archive, v.result, v.verified_at, v.job_id, v.detail) for v in result.verifications],
        )


async def write_figures(conn: Conn, figures: list[RepositoryFigures]) -> None:
    """The latest figures per repository, and the last of each UTC day (the history).

    Later measurements win; one as late as the stored one wins too, as it was applied
    after it in stream order: a replay writes exactly the same rows.
    """
    for f in figures:
        f = await _with_archive_count(conn, f)
        await conn.execute(
            "INSERT INTO repository_stats (repository_id, at, job_id, figures) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (repository_id) DO UPDATE SET at = EXCLUDED.at, job_id = EXCLUDED.job_id,"
            " figures = EXCLUDED.figures WHERE repository_stats.at <= EXCLUDED.at",
            f.repository_id,
            f.at,
            f.job_id,
            f.figures,
        )
        await conn.execute(
            "INSERT INTO repository_stats_days (repository_id, day, at, figures)"
            " VALUES ($1, ($2::timestamptz AT TIME ZONE 'UTC')::date, $2, $3)"
            " ON CONFLICT (repository_id, day) DO UPDATE SET at = EXCLUDED.at, figures = EXCLUDED.figures"
            " WHERE repository_stats_days.at <= EXCLUDED.at",
            f.repository_id,
            f.at,
            f.figures,
        )


async def _with_archive_count(conn: Conn, f: RepositoryFigures) -> RepositoryFigures:
    """A backup's `archives_added` made a count: the stored one plus it (in stream order, so a
    replay counts the same). A prune or compact lists the archives again and resets it."""
    added = f.figures.get("archives_added")
    if "archives" in f.figures or not isinstance(added, int):
        return f
    before = await conn.fetchval(
        "SELECT (figures->>'archives')::int FROM repository_stats WHERE repository_id = $1", f.repository_id
    )
    figures = {k: v for k, v in f.figures.items() if k != "archives_added"}
    figures["archives"] = before + added if before is not None else None
    return dataclasses.replace(f, figures=figures)


async def prune_finish_counts(conn: Conn) -> None:
    await conn.execute(f"DELETE FROM job_finish_counts WHERE minute < now() - interval '{KEEP_FINISH_COUNTS}'")


async def write_progress(conn: Conn, rows: list[tuple[str, int, datetime, Progress]]) -> None:
    # A batch can hold several progress events of one job: its latest is enough.
    latest = {job_id: (job_id, seq, at, msgspec.to_builtins(p)) for job_id, seq, at, p in rows}
    if not latest:
        return
    await conn.executemany(
        "INSERT INTO job_progress (job_id, seq, at, progress) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (job_id) DO UPDATE SET seq = EXCLUDED.seq, at = EXCLUDED.at, progress = EXCLUDED.progress"
        " WHERE job_progress.seq < EXCLUDED.seq",
        list(latest.values()),
    )


async def write_heartbeats(conn: Conn, rows: list[tuple[datetime, HeartbeatData]]) -> None:
    args: list[tuple[Any, ...]] = [
        (h.agent, h.host, at, h.borg_version, h.slots, h.running, h.interval_s, h.borgflow_version) for at, h in rows
    ]
    if args:
        await conn.executemany(
            "INSERT INTO agents (name, host, last_seen, borg_version, slots, running, interval_s, borgflow_version)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            " ON CONFLICT (name) DO UPDATE SET host = EXCLUDED.host, last_seen = EXCLUDED.last_seen,"
            " borg_version = EXCLUDED.borg_version, slots = EXCLUDED.slots, running = EXCLUDED.running,"
            " borgflow_version = EXCLUDED.borgflow_version,"
            " interval_s = EXCLUDED.interval_s WHERE agents.last_seen <= EXCLUDED.last_seen",
            args,
        )


async def drop_read_model(conn: Conn) -> None:
    """Empty every projected table, for a rebuild from the streams."""
    await conn.execute("TRUNCATE " + ", ".join(READ_MODEL_TABLES))

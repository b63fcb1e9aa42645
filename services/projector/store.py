"""The projector's SQL: applying a batch, progress and agents; dropping for a rebuild."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from services.projector.domain import BatchResult
from shared import readmodel
from shared.db import Conn
from shared.events import HeartbeatData, Progress

JOBS = "jobs"
PROGRESS = "progress"
AGENTS = "agents"

READ_MODEL_TABLES = ("jobs", "job_progress", "archives", "agents", "projection_checkpoints")


async def write_batch(conn: Conn, result: BatchResult, last_seq: int) -> None:
    await readmodel.upsert_jobs(conn, result.changed.values())
    if result.deleted:
        await readmodel.delete_jobs(conn, sorted(result.deleted))
        await conn.execute("DELETE FROM job_progress WHERE job_id = ANY($1::text[])", sorted(result.deleted))
    for a in result.archives:
        if a.removed:
            await conn.execute("DELETE FROM archives WHERE repository_id = $1 AND name = $2", a.repository_id, a.name)
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
    await readmodel.set_checkpoint(conn, JOBS, last_seq)


async def write_progress(conn: Conn, rows: list[tuple[str, int, datetime, Progress]]) -> None:
    if not rows:
        return
    await conn.executemany(
        "INSERT INTO job_progress (job_id, seq, at, progress) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (job_id) DO UPDATE SET seq = EXCLUDED.seq, at = EXCLUDED.at, progress = EXCLUDED.progress"
        " WHERE job_progress.seq < EXCLUDED.seq",
        [(job_id, seq, at, msgspec.to_builtins(p)) for job_id, seq, at, p in rows],
    )


async def write_heartbeats(conn: Conn, rows: list[tuple[datetime, HeartbeatData]], seq: int) -> None:
    args: list[tuple[Any, ...]] = [
        (h.agent, h.host, at, h.borg_version, h.slots, h.running, h.interval_s) for at, h in rows
    ]
    if args:
        await conn.executemany(
            "INSERT INTO agents (name, host, last_seen, borg_version, slots, running, interval_s)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)"
            " ON CONFLICT (name) DO UPDATE SET host = EXCLUDED.host, last_seen = EXCLUDED.last_seen,"
            " borg_version = EXCLUDED.borg_version, slots = EXCLUDED.slots, running = EXCLUDED.running,"
            " interval_s = EXCLUDED.interval_s WHERE agents.last_seen <= EXCLUDED.last_seen",
            args,
        )
    await readmodel.set_checkpoint(conn, AGENTS, seq)


async def drop_read_model(conn: Conn) -> None:
    """Empty every projected table, for a rebuild from the streams."""
    await conn.execute("TRUNCATE " + ", ".join(READ_MODEL_TABLES))

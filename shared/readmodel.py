"""Writing the jobs read model: one row per job, the JobView as a document plus filter columns.

The projector writes it from the stream; the api also writes a job's first row
right after appending its `job.queued` (ON CONFLICT DO NOTHING), so a client can
read its job back at once. Both write the same fold of the same events, and a
row only moves forward (`last_seq`), so the result equals a replay.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from shared.db import Conn
from shared.jobs import JobView

_COLUMNS = (
    "id, project, type, status, agent, repository_id, plan_id, schedule_id, trigger, search,"
    " created_at, started_at, finished_at, last_seq, doc"
)

_UPSERT = f"""
INSERT INTO jobs ({_COLUMNS})
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                     $8::text[], $9::text[], $10::text[], $11::timestamptz[], $12::timestamptz[],
                     $13::timestamptz[], $14::bigint[], $15::jsonb[])
ON CONFLICT (id) DO UPDATE SET
    status = EXCLUDED.status, agent = EXCLUDED.agent, started_at = EXCLUDED.started_at,
    finished_at = EXCLUDED.finished_at, last_seq = EXCLUDED.last_seq, doc = EXCLUDED.doc
WHERE jobs.last_seq < EXCLUDED.last_seq
"""

_INSERT_NEW = _UPSERT.split("ON CONFLICT")[0] + "ON CONFLICT (id) DO NOTHING"


def search_text(view: JobView) -> str:
    """Lower-cased names a person searches by (agent, plan, repository)."""
    parts = (view.agent, view.plan_name, view.repository_name, view.type)
    return " ".join(p.lower() for p in parts if p)


def doc_of(view: JobView) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(view)
    return out


def view_of(doc: dict[str, Any]) -> JobView:
    return msgspec.convert(doc, JobView)


def _columns(views: Sequence[JobView]) -> list[list[Any]]:
    cols: list[list[Any]] = [[] for _ in range(15)]
    for v in views:
        row = (
            v.id,
            v.project,
            v.type,
            str(v.status),
            v.agent,
            v.repository_id,
            v.plan_id,
            v.schedule_id,
            v.trigger,
            search_text(v),
            v.created_at,
            v.started_at,
            v.finished_at,
            v.last_seq,
            doc_of(v),
        )
        for i, value in enumerate(row):
            cols[i].append(value)
    return cols


async def upsert_jobs(conn: Conn, views: Iterable[JobView]) -> None:
    """Write views, each only if it is newer (higher last_seq) than the stored row."""
    views = list(views)
    if views:
        await conn.execute(_UPSERT, *_columns(views))


async def insert_new_job(conn: Conn, view: JobView) -> None:
    """A just-queued job's row, unless the projector was faster."""
    await conn.execute(_INSERT_NEW, *_columns([view]))


async def delete_jobs(conn: Conn, job_ids: Sequence[str]) -> None:
    if job_ids:
        await conn.execute("DELETE FROM jobs WHERE id = ANY($1::text[])", list(job_ids))


async def load_views(conn: Conn, job_ids: Sequence[str]) -> dict[str, JobView]:
    rows = await conn.fetch("SELECT doc FROM jobs WHERE id = ANY($1::text[])", list(job_ids))
    return {r["doc"]["id"]: view_of(r["doc"]) for r in rows}


async def get_checkpoint(conn: Conn, name: str) -> int:
    seq = await conn.fetchval("SELECT seq FROM projection_checkpoints WHERE name = $1", name)
    return int(seq or 0)


async def set_checkpoint(conn: Conn, name: str, seq: int) -> None:
    await conn.execute(
        "INSERT INTO projection_checkpoints (name, seq) VALUES ($1, $2)"
        " ON CONFLICT (name) DO UPDATE SET seq = GREATEST(projection_checkpoints.seq, EXCLUDED.seq)",
        name,
        seq,
    )

"""Writing the jobs read model: one row per job, the JobView as a document plus filter columns.

The projector writes it from the stream; the api also writes a job's first row
right after appending its `job.queued` (ON CONFLICT DO NOTHING), and a cancel it
just appended, so a client can read its job back at once. Both write the same
fold of the same events, and a row only moves forward (`last_seq`), so the result
equals a replay.

Writers of one projection take turns on its checkpoint row (`lock_checkpoint`).
The api's writes take their turn too, and are dropped once the projection has
passed their event: the projector wrote that row already, and may have deleted
it since (`job.deleted`), which a late insert must not undo.
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

# The jobs projection's checkpoint name (services/projector/store.py writes it).
JOBS_PROJECTION = "jobs"

_ROWS = f"""
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                     $8::text[], $9::text[], $10::text[], $11::timestamptz[], $12::timestamptz[],
                     $13::timestamptz[], $14::bigint[], $15::jsonb[]) AS v({_COLUMNS})
"""

_NEWER = """
ON CONFLICT (id) DO UPDATE SET
    status = EXCLUDED.status, agent = EXCLUDED.agent, started_at = EXCLUDED.started_at,
    finished_at = EXCLUDED.finished_at, last_seq = EXCLUDED.last_seq, doc = EXCLUDED.doc
WHERE jobs.last_seq < EXCLUDED.last_seq
"""

# The projector's write: it holds the projection's lock, and applies only what is past it.
_PROJECT = f"INSERT INTO jobs ({_COLUMNS}){_ROWS}{_NEWER}"

# A write ahead of the projector, only for events the projection has not passed. The lock
# waits for a projector's batch in flight and reads the checkpoint it leaves (READ COMMITTED
# rechecks a locked row's newest version); while held, no batch begins. Not FOR SHARE: new
# share lockers pass a waiting FOR UPDATE, so a stream of submissions would starve the
# projector. (The api's writes of one project queue behind each other on the counters
# of migration 0005 already.)
_AHEAD = f"""
WITH projected AS (SELECT seq FROM projection_checkpoints WHERE name = '{JOBS_PROJECTION}' FOR UPDATE)
INSERT INTO jobs ({_COLUMNS}){_ROWS}WHERE v.last_seq > coalesce((SELECT seq FROM projected), 0)
"""
_UPSERT = _AHEAD + _NEWER
_INSERT_NEW = _AHEAD + "ON CONFLICT (id) DO NOTHING"


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


async def project_jobs(conn: Conn, views: Iterable[JobView]) -> None:
    """The projector's write, under the lock: each view only if newer (higher last_seq) than its row."""
    views = list(views)
    if views:
        await conn.execute(_PROJECT, *_columns(views))


async def upsert_jobs(conn: Conn, views: Iterable[JobView]) -> None:
    """Views the api just made: each only if newer than its row and not yet projected."""
    views = list(views)
    if views:
        await conn.execute(_UPSERT, *_columns(views))


async def insert_new_job(conn: Conn, view: JobView) -> None:
    """A just-queued job's row, unless the projector was faster (and so, never after its deletion)."""
    await conn.execute(_INSERT_NEW, *_columns([view]))


async def insert_new_jobs(conn: Conn, views: Sequence[JobView]) -> None:
    """Just-queued jobs' rows (one statement), each unless the projector was faster."""
    if views:
        await conn.execute(_INSERT_NEW, *_columns(views))


async def delete_jobs(conn: Conn, job_ids: Sequence[str]) -> None:
    if job_ids:
        await conn.execute("DELETE FROM jobs WHERE id = ANY($1::text[])", list(job_ids))


async def load_views(conn: Conn, job_ids: Sequence[str]) -> dict[str, JobView]:
    rows = await conn.fetch("SELECT doc FROM jobs WHERE id = ANY($1::text[])", list(job_ids))
    return {r["doc"]["id"]: view_of(r["doc"]) for r in rows}


async def get_checkpoint(conn: Conn, name: str) -> int:
    seq = await conn.fetchval("SELECT seq FROM projection_checkpoints WHERE name = $1", name)
    return int(seq or 0)


async def lock_checkpoint(conn: Conn, name: str) -> int:
    """A projection's position, locked until the transaction ends: its writers take turns."""
    query = "SELECT seq FROM projection_checkpoints WHERE name = $1 FOR UPDATE"
    seq = await conn.fetchval(query, name)
    if seq is None:  # its first batch (or the first after a rebuild)
        await conn.execute("INSERT INTO projection_checkpoints (name, seq) VALUES ($1, 0) ON CONFLICT DO NOTHING", name)
        seq = await conn.fetchval(query, name)
    return int(seq)


async def set_checkpoint(conn: Conn, name: str, seq: int) -> None:
    await conn.execute(
        "INSERT INTO projection_checkpoints (name, seq) VALUES ($1, $2)"
        " ON CONFLICT (name) DO UPDATE SET seq = GREATEST(projection_checkpoints.seq, EXCLUDED.seq)",
        name,
        seq,
    )

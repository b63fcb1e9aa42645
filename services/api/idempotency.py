"""`Idempotency-Key` on POST /api/jobs: a retried request gets the job of the first one.

The key (per token) is given a job id before anything is appended, in its own
transaction, so the id survives whatever fails after it. The append then carries a
message id derived from that job id: if the first attempt's `job.queued` landed but
its answer was lost (NATS failing over, a timeout), JetStream refuses the second as
a duplicate, and beyond its duplicate window the api finds the job in the stream
before appending. A key reused with another body is refused, as a client bug.

An append NATS does not confirm in time (a slow or failing-over server) may still be
stored: the answer is then 202 with the job, whose id the client already holds, and
not an error that would have it submit again without a key.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta
from typing import Any

import asyncpg
import msgspec
from litestar import Request, Response
from litestar.openapi.datastructures import ResponseSpec

from services.api import job_actions
from services.api.errors import Invalid
from shared import ids
from shared.jobs import JobView
from shared.submit import QueueingUnconfirmed

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
MAX_LENGTH = 200
# Keys older than this are forgotten (a client retries within minutes, not days).
KEEP = timedelta(days=7)


class Claim(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    replay: bool
    """The key was seen before: the job may exist already."""


def check_key(key: str) -> str:
    key = key.strip()
    if not key or len(key) > MAX_LENGTH or not key.isprintable():
        raise Invalid(f"{HEADER}: 1 to {MAX_LENGTH} printable characters", HEADER)
    return key


def body_hash(body: Any) -> str:
    return hashlib.sha256(msgspec.json.encode(body, order="sorted")).hexdigest()


async def claim(pool: asyncpg.Pool, token_id: str, key: str, body: Any) -> Claim:
    """The job id of (token, key): a new one the first time, the same one after."""
    digest = body_hash(body)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM idempotency_keys WHERE created_at < now() - $1::interval", KEEP)
        new_id = ids.new_id()
        row = await conn.fetchrow(
            "INSERT INTO idempotency_keys (token_id, key, body_hash, job_id) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (token_id, key) DO UPDATE SET token_id = EXCLUDED.token_id"
            " RETURNING job_id, body_hash",
            token_id,
            key,
            digest,
            new_id,
        )
    assert row is not None  # INSERT ... ON CONFLICT DO UPDATE ... RETURNING always answers a row
    if row["body_hash"] != digest:
        raise Invalid(f"{HEADER} {key!r} was used before with another body: use a new key", HEADER)
    return Claim(job_id=row["job_id"], replay=row["job_id"] != new_id)


def msg_id(job_id: str) -> str:
    """The append's message id for a keyed job: the same on every retry."""
    return f"queued:{job_id}"


BEING_QUEUED = ResponseSpec(
    JobView,
    description="Sent to be queued, but NATS did not confirm it in time: the job (its `message` says what to do)",
)


def being_queued(request: Request[Any, Any, Any], exc: QueueingUnconfirmed) -> Response[JobView]:
    """202 and the job whose `job.queued` NATS did not confirm in time (POST /api/jobs)."""
    job_id = exc.spec.id
    if request.headers.get(HEADER) is not None:
        then = f"Send the same request with the same {HEADER} again to be sure: it answers this job, queued once."
    else:
        then = (
            f"GET /api/jobs/{job_id} shows it once it is (404 until then). The same request sent again "
            f"queues a second job: retry with an {HEADER} header instead."
        )
    message = f"being queued: NATS did not confirm in time that the job was queued. {then}"
    log.warning("job.queued not confirmed in time", extra={"job_id": job_id, "action": "job.unconfirmed"})
    view = msgspec.structs.replace(job_actions.view_of_spec(exc.spec), message=message)
    return Response(view, status_code=202)

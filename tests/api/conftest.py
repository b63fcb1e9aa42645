"""The real api, served over HTTP on a free port (tests/support/apiclient.py), against a private
NATS and a fresh database; tests check the results with the `pool` and `js` fixtures.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest_asyncio
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from services.api.app import ApiDeps
from shared import bus, ids, readmodel
from shared.config import Settings
from shared.events import Event, JobQueued, JobSpec
from shared.jobs import JobView
from shared.testing import NatsServer
from shared.tokens import hash_token
from tests.support.apiclient import ApiClient, served_api

ADMIN_TOKEN = "admin-token-for-tests"
AGENT_TOKEN = "agent-token-for-tests"
PASSPHRASE = "correct horse battery staple"
# The api's key for secrets at rest (shared/secretkeys.py), so that no test writes a key file.
SECRET_KEY = "Ym9yZ2Zsb3ctdGVzdHMtc2VjcmV0LWtleS0zMmJ5dGU="

Client = ApiClient


def auth(token: str = ADMIN_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest_asyncio.fixture(loop_scope="session")
async def settings(database_url: str, nats_server: NatsServer) -> Settings:
    return Settings(database_url=database_url, nats_url=nats_server.url, admin_token=ADMIN_TOKEN, secret_key=SECRET_KEY)


@pytest_asyncio.fixture(loop_scope="session")
async def client(settings: Settings, pool: asyncpg.Pool, nc: NATS, js: JetStreamContext) -> AsyncIterator[Client]:
    """An admin client of a started api (streams exist before it starts, as in `borgflow up`)."""
    async with served_api(settings, ApiDeps(pool=pool, nc=nc), auth()) as c:
        yield c


@pytest_asyncio.fixture(loop_scope="session")
async def agent_token(pool: asyncpg.Pool) -> str:
    await pool.execute(
        "INSERT INTO tokens (id, name, role, hash, agent) VALUES ($1, 'executor-local', 'agent', $2, 'local')",
        ids.new_id(),
        hash_token(AGENT_TOKEN),
    )
    return AGENT_TOKEN


async def make_repository(
    client: Client, name: str = "r1", passphrase: str | None = PASSPHRASE, agent: str = "local"
) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "location": f"/srv/borg/{name}", "agent": agent}
    if passphrase is not None:
        body["passphrase"] = passphrase
    r = await client.post("/api/repositories", json=body)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


async def make_plan(client: Client, repository_id: str, name: str = "p1", **fields: Any) -> dict[str, Any]:
    body = {"name": name, "repository_id": repository_id, "paths": ["/etc"], **fields}
    r = await client.post("/api/plans", json=body)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


async def advance(js: JetStreamContext, pool: asyncpg.Pool, job_id: str, *events: Event) -> JobView:
    """Append events to a job, as dispatcher and executor would, and project its row."""
    for event in events:
        await bus.publish(js, event)
    view = await bus.load_job(js, job_id)
    assert view is not None
    async with pool.acquire() as conn:
        await readmodel.upsert_jobs(conn, [view])
    return view


async def jobs_stream_count(js: JetStreamContext) -> int:
    info = await js.stream_info("BORGFLOW_JOBS")
    return int(info.state.messages)


async def queue_scheduled_job(
    js: JetStreamContext, pool: asyncpg.Pool, schedule_id: str, created_at: datetime | None = None
) -> JobView:
    """A job as the scheduler queues it (a ping: it needs no configuration), with its row."""
    spec = JobSpec(
        id=ids.new_id(),
        type="ping",
        agent="local",
        trigger="schedule",
        schedule_id=schedule_id,
        created_at=created_at or datetime.now(UTC),
    )
    return await advance(js, pool, spec.id, JobQueued(job_id=spec.id, data=spec))

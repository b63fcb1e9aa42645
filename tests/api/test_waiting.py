"""Why a queued job waits and where it stands: asked of a real dispatcher for the jobs an answer
holds, merged into that answer; without a dispatcher, a queued job shows `waiting: null`.

The api is served for real here (uvicorn in the test's event loop): the test client runs the
app in a thread of its own, whose loop the NATS connection's replies would not wake."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import httpx
import msgspec
import pytest_asyncio
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from services.api.app import ApiDeps
from services.api.app import run as run_api
from services.dispatcher.app import Dispatcher
from shared import bus
from shared.config import Settings, SystemSettings
from shared.events import AgentHeartbeat, HeartbeatData
from shared.livesettings import put_settings
from shared.testing import free_port
from tests.api.conftest import Client, auth, make_repository
from tests.support.waiting import eventually


@pytest_asyncio.fixture(loop_scope="session")
async def served(settings: Settings, pool: asyncpg.Pool, nc: NATS, js: JetStreamContext) -> AsyncIterator[Client]:
    port = free_port()
    stop = asyncio.Event()
    serving = asyncio.create_task(
        run_api(msgspec.structs.replace(settings, listen_port=port), stop, ApiDeps(pool=pool, nc=nc))
    )
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=auth(), timeout=10) as http:

        async def up() -> bool:
            try:
                return (await http.get("/api/health")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(up, what="the api")
        yield http  # type: ignore[misc]
    stop.set()
    await asyncio.wait_for(serving, 10)


@pytest_asyncio.fixture(loop_scope="session")
async def dispatcher(js: JetStreamContext) -> AsyncIterator[Dispatcher]:
    d = Dispatcher(js)
    stop = asyncio.Event()
    task = asyncio.create_task(d.loop(stop))
    yield d
    stop.set()
    await asyncio.wait_for(task, 10)


async def test_without_a_dispatcher_a_queued_job_shows_no_reason(served: Client) -> None:
    client = served
    repo = await make_repository(client)
    job = (await client.post("/api/jobs", json={"type": "check", "repository_id": repo["id"]})).json()
    assert job["status"] == "queued" and job["waiting"] is None
    assert (await client.get(f"/api/jobs/{job['id']}")).json()["waiting"] is None


async def test_queued_jobs_show_why_they_wait_and_where_they_stand(
    served: Client, js: JetStreamContext, dispatcher: Dispatcher
) -> None:
    client = served
    await put_settings(js, SystemSettings(max_concurrent_jobs=1))
    await bus.publish(js, AgentHeartbeat(data=HeartbeatData(agent="local", interval_s=3600)))
    repo = await make_repository(client)
    ids = [
        (await client.post("/api/jobs", json={"type": "check", "repository_id": repo["id"]})).json()["id"]
        for _ in range(3)
    ]
    offline = (await client.post("/api/jobs", json={"type": "ping", "agent": "elsewhere"})).json()["id"]

    async def sent_first() -> bool:
        return bool((await client.get(f"/api/jobs/{ids[0]}")).json()["status"] == "sent")

    await eventually(sent_first, what="the first check sent")
    second = (await client.get(f"/api/jobs/{ids[1]}")).json()["waiting"]
    assert second == {"reason": "agent_busy", "detail": "agent local is busy (1 of 1 slots in use)", "position": 1}
    third = (await client.get(f"/api/jobs/{ids[2]}")).json()["waiting"]
    assert third["reason"] == "agent_busy" and third["position"] == 2
    assert (await client.get(f"/api/jobs/{offline}")).json()["waiting"]["reason"] == "agent_offline"

    listed = {j["id"]: j["waiting"] for j in (await client.get("/api/jobs")).json()["items"]}
    assert listed[ids[0]] is None and listed[ids[1]] == second and listed[ids[2]] == third
    queue = {j["id"]: j["waiting"] for j in (await client.get("/api/queue")).json()["queued"]}
    assert queue[ids[1]] == second and queue[ids[0]] is None  # sent: it waits for nothing

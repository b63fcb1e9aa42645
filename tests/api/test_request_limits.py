"""Request limits: a body beyond BORGFLOW_MAX_BODY_BYTES is 413 (never 500), and a token's
websockets beyond BORGFLOW_MAX_SOCKETS_PER_TOKEN are refused with a code a client can read."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import msgspec
from litestar.exceptions import WebSocketDisconnect
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from services.api.app import ApiDeps
from shared import bus, ids
from shared.config import Settings
from shared.events import JobProgress, Progress
from tests.api.conftest import Client, auth
from tests.support.apiclient import Socket, served_api
from tests.support.waiting import eventually

LIMIT = 2048


@asynccontextmanager
async def api_with(settings: Settings, pool: asyncpg.Pool, nc: NATS, **limits: Any) -> AsyncIterator[Client]:
    async with served_api(msgspec.structs.replace(settings, **limits), ApiDeps(pool=pool, nc=nc), auth()) as c:
        yield c


async def test_a_body_beyond_the_limit_is_413_and_the_connection_goes_on(
    settings: Settings, pool: asyncpg.Pool, nc: NATS, js: JetStreamContext
) -> None:
    async with api_with(settings, pool, nc, max_body_bytes=LIMIT) as client:
        big = json.dumps({"type": "ping", "agent": "a", "options": {"pad": "x" * LIMIT}}).encode()
        r = await client.post("/api/jobs", content=big, headers={"Content-Type": "application/json"})
        assert r.status_code == 413, r.text
        assert r.json() == {
            "detail": f"the request body is larger than this api takes ({LIMIT} bytes, BORGFLOW_MAX_BODY_BYTES)"
        }

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(big), 512):
                yield big[i : i + 512]

        # Without Content-Length (chunked), it is counted as it streams in.
        r = await client.post("/api/jobs/batch", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and str(LIMIT) in r.json()["detail"], r.text

        # The same client goes on: nothing of the refused bodies is read as a next request.
        r = await client.post("/api/jobs", json={"type": "ping", "agent": "a"})
        assert r.status_code == 201, r.text
        assert (await client.get(f"/api/jobs/{r.json()['id']}")).status_code == 200
        small = {"jobs": [{"type": "ping", "agent": "a"}] * 10}
        assert len(json.dumps(small)) < LIMIT
        assert (await client.post("/api/jobs/batch", json=small)).status_code == 201


async def _live(ws: Socket, js: JetStreamContext) -> bool:
    """Whether the api serves `ws`: an event published now reaches it (False: refused with 4429)."""
    job_id = ids.new_id()
    await bus.publish(js, JobProgress(job_id=job_id, data=Progress(percent=1.0)))
    try:
        while (await ws.receive_json())["job_id"] != job_id:
            pass
    except WebSocketDisconnect as e:
        assert e.code == 4429 and "at most 2 at once" in str(e.detail), (e.code, e.detail)
        return False
    return True


async def test_a_token_has_at_most_n_websockets(
    settings: Settings, pool: asyncpg.Pool, nc: NATS, js: JetStreamContext
) -> None:
    events = "/api/events?type=job.progress"
    async with api_with(settings, pool, nc, max_sockets_per_token=2) as client, client.websocket(events) as kept:
        async with client.websocket(events) as closing:
            assert await _live(kept, js) and await _live(closing, js)

            async with client.websocket(events) as third:
                assert not await _live(third, js)
            # Every websocket route counts: a job's log follow is the third as well.
            job_id = (await client.post("/api/jobs", json={"type": "ping", "agent": "a"})).json()["id"]
            async with client.websocket(f"/api/jobs/{job_id}/log/follow") as follow:
                assert await follow.closed_with() == 4429

            # Per token: another token opens its own (an admin: it sees events of jobs of no project).
            r = await client.post("/api/tokens", json={"name": "another admin", "role": "admin"})
            async with client.websocket(events, auth(r.json()["token"])) as other:
                assert await _live(other, js)

        # One closed: its place is free again (once the api has seen it go).
        async def a_new_one_is_served() -> bool:
            async with client.websocket(events) as fresh:
                return await _live(fresh, js)

        await eventually(a_new_one_is_served, timeout=10, what="a websocket served after one closed")

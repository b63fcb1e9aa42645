"""`run` serves the app over a real port with the caller's connections, until told to stop."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import httpx
import msgspec
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from services.api.app import ApiDeps, run
from shared.config import Settings
from shared.testing import free_port
from tests.api.conftest import auth


async def test_run_serves_until_stop(settings: Settings, pool: asyncpg.Pool, nc: NATS, js: JetStreamContext) -> None:
    port = free_port()
    stop = asyncio.Event()
    serving = asyncio.create_task(run(_with_port(settings, port), stop, ApiDeps(pool=pool, nc=nc)))
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=5) as http:
        deadline = time.monotonic() + 10
        while True:
            assert not serving.done(), serving.exception()
            try:
                if (await http.get("/api/health")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the api did not become healthy"
            await asyncio.sleep(0.05)
        r = await http.post("/api/jobs", json={"type": "ping", "agent": "web-1"}, headers=auth())
        assert r.status_code == 201, r.text
    stop.set()
    await asyncio.wait_for(serving, 10)
    assert nc.is_connected  # the caller's connection stays the caller's
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 1


async def test_run_fails_loudly_when_it_cannot_start(settings: Settings) -> None:
    bad = _with_port(settings, free_port(), database_url="postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(RuntimeError, match="could not start"):
        await asyncio.wait_for(run(bad, asyncio.Event()), 20)


def _with_port(settings: Settings, port: int, **changes: object) -> Settings:
    return msgspec.structs.replace(settings, listen_port=port, **changes)

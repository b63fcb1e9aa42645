"""Why a queued job waits: the dispatcher's KV map, merged into every job answer."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import msgspec
from nats.js import JetStreamContext

from services.api.waiting import KEY, WaitingBoard, watch
from shared.events import JobSent, SentData
from shared.streams import WAITING_BUCKET, ensure_streams
from tests.api.conftest import Client, advance, make_repository
from tests.support.waiting import eventually

REASON = {"reason": "repository_busy", "detail": "repository r1 is busy with job j0, a check", "position": 1}


async def _publish(js: JetStreamContext, waiting: dict[str, Any]) -> None:
    kv = await js.key_value(WAITING_BUCKET)
    await kv.put(KEY, msgspec.json.encode({"waiting": waiting}))


async def test_queued_jobs_show_why_they_wait(client: Client, js: JetStreamContext, pool: asyncpg.Pool) -> None:
    repo = await make_repository(client)
    first, second = [
        (await client.post("/api/jobs", json={"type": "check", "repository_id": repo["id"]})).json()["id"]
        for _ in range(2)
    ]
    assert (await client.get(f"/api/jobs/{first}")).json()["waiting"] is None

    await _publish(js, {first: REASON, "some-other-job": REASON | {"position": 2}})

    async def shown() -> bool:
        return bool((await client.get(f"/api/jobs/{first}")).json()["waiting"] == REASON)

    await eventually(shown, what="the waiting reason in GET /api/jobs/{id}")
    listed = {j["id"]: j["waiting"] for j in (await client.get("/api/jobs")).json()["items"]}
    assert listed == {first: REASON, second: None}
    queued = {j["id"]: j["waiting"] for j in (await client.get("/api/queue")).json()["queued"]}
    assert queued == {first: REASON, second: None}

    # Only a queued job waits: once sent, the stale entry is not shown.
    await advance(js, pool, first, JobSent(job_id=first, data=SentData(agent="local")))
    assert (await client.get(f"/api/jobs/{first}")).json()["waiting"] is None
    assert all(j["waiting"] is None for j in (await client.get("/api/queue")).json()["queued"])

    await _publish(js, {second: REASON})

    async def moved() -> bool:
        return bool((await client.get(f"/api/jobs/{second}")).json()["waiting"] == REASON)

    await eventually(moved, what="the new map")


async def test_watch_starts_empty_without_a_bucket_and_picks_it_up(js: JetStreamContext) -> None:
    await js.delete_key_value(WAITING_BUCKET)
    board = WaitingBoard()
    task = asyncio.create_task(watch(js, board, retry_s=0.05))
    try:
        await ensure_streams(js)  # the bucket appears (as when the dispatcher starts)
        await _publish(js, {"j1": REASON})

        async def seen() -> bool:
            return "j1" in board.reasons

        await eventually(seen, what="the map once the bucket exists")
        assert msgspec.to_builtins(board.reasons["j1"]) == REASON

        kv = await js.key_value(WAITING_BUCKET)
        await kv.put(KEY, b"not json")

        async def cleared() -> bool:
            return board.reasons == {}

        await eventually(cleared, what="an unreadable map read as empty")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

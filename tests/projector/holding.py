"""A projector that holds its first batch of jobs, under the projection's lock, until released."""

from __future__ import annotations

import asyncio

import asyncpg
from nats.js import JetStreamContext

from services.projector import store
from services.projector.app import Projector


class Held(Projector):
    def __init__(self, pool: asyncpg.Pool, js: JetStreamContext) -> None:
        super().__init__(pool, js)
        self.inside = asyncio.Event()
        self.release = asyncio.Event()

    async def holding(self, name: str, last: int) -> None:
        if name == store.JOBS and not self.inside.is_set():
            self.inside.set()
            await self.release.wait()

    async def held(self) -> bool:
        """Whether it holds its first batch now (for `eventually`)."""
        return self.inside.is_set()


async def waiting_for_a_lock(pool: asyncpg.Pool, query: str) -> bool:
    """Whether a statement like `query` (a LIKE pattern) waits for a lock another transaction holds."""
    async with pool.acquire() as conn:
        sql = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1"
        return bool(await conn.fetchval(sql, query))

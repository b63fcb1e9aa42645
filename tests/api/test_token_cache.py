"""Token lookups are kept a few seconds: a busy client costs one query per TTL, not per request."""

from __future__ import annotations

from typing import Any

from services.api.token_cache import TokenCache


class Table:
    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {"h1": {"id": "t1"}, "h2": {"id": "t2"}}
        self.asked = 0

    async def lookup(self, token_hash: str) -> dict[str, Any] | None:
        self.asked += 1
        return self.rows.get(token_hash)


async def test_a_known_token_is_asked_for_once_per_ttl() -> None:
    table, cache = Table(), TokenCache(ttl=60)
    for _ in range(5):
        assert await cache.row("h1", table.lookup) == {"id": "t1"}
    assert table.asked == 1


async def test_an_unknown_token_is_asked_for_every_time() -> None:
    table, cache = Table(), TokenCache(ttl=60)
    assert await cache.row("nope", table.lookup) is None
    table.rows["nope"] = {"id": "t3"}  # made a moment later, on another api
    assert await cache.row("nope", table.lookup) == {"id": "t3"}


async def test_a_revoked_token_is_forgotten_at_once_and_stale_entries_asked_again() -> None:
    table, cache = Table(), TokenCache(ttl=60)
    await cache.row("h1", table.lookup)
    del table.rows["h1"]
    cache.forget("t1")
    assert await cache.row("h1", table.lookup) is None
    expired = TokenCache(ttl=0)
    await expired.row("h2", table.lookup)
    del table.rows["h2"]  # revoked through another api replica
    assert await expired.row("h2", table.lookup) is None


async def test_it_holds_at_most_max_entries() -> None:
    table, cache = Table(), TokenCache(ttl=60, max_entries=1)
    await cache.row("h1", table.lookup)
    await cache.row("h2", table.lookup)
    await cache.row("h1", table.lookup)
    assert table.asked == 3

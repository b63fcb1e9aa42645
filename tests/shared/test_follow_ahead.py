"""`ahead`: batches fetched ahead of the caller still arrive in order, errors after them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from shared.follow import ahead


async def numbers(n: int, fail: bool = False, pulled: list[int] | None = None) -> AsyncIterator[int]:
    for i in range(n):
        if pulled is not None:
            pulled.append(i)
        await asyncio.sleep(0)
        yield i
    if fail:
        raise ConnectionError("link broke")


async def test_items_come_in_order_and_all_of_them() -> None:
    assert [i async for i in ahead(numbers(100), depth=3)] == list(range(100))


async def test_an_error_comes_after_the_items_before_it() -> None:
    seen: list[int] = []
    with pytest.raises(ConnectionError, match="link broke"):
        async for i in ahead(numbers(5, fail=True)):
            seen.append(i)
    assert seen == [0, 1, 2, 3, 4]


async def test_it_fetches_ahead_but_no_further_than_depth() -> None:
    pulled: list[int] = []
    items = ahead(numbers(100, pulled=pulled), depth=2)
    assert await anext(items) == 0
    for _ in range(20):  # let the pump run as far as it may
        await asyncio.sleep(0)
    # one handed out, two waiting in the queue, one held by the blocked put
    assert len(pulled) == 4
    await items.aclose()  # type: ignore[attr-defined]

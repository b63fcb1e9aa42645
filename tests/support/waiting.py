"""Waiting on state with a deadline instead of sleeping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(check: Callable[[], Awaitable[T]], timeout: float = 20.0, what: str = "condition") -> T:
    """Await `check` until it returns a truthy value; fail with the last value after `timeout`."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = await check()
        except AssertionError as e:
            last = e
        else:
            if last:
                return last  # type: ignore[return-value]
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} did not hold within {timeout}s (last: {last!r})")

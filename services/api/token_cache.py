"""Tokens the api has just looked up, kept a few seconds so a busy client costs no query each.

Only tokens that exist are kept (an unknown one is always asked for, so a token made a
moment ago on another api works at once). A revocation through this api drops the entry
at once; one through another api replica takes effect here within `ttl` seconds.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

TTL_S = 5.0
MAX_ENTRIES = 10_000


class TokenCache:
    def __init__(self, ttl: float = TTL_S, max_entries: int = MAX_ENTRIES) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._rows: OrderedDict[str, tuple[float, Any]] = OrderedDict()

    async def row(self, token_hash: str, lookup: Callable[[str], Awaitable[Any]]) -> Any:
        """The token's row (None when there is none), from here while it is fresh."""
        now = time.monotonic()
        hit = self._rows.get(token_hash)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        row = await lookup(token_hash)
        if row is None:
            self._rows.pop(token_hash, None)
            return None
        self._rows[token_hash] = (now, row)
        self._rows.move_to_end(token_hash)
        while len(self._rows) > self.max_entries:
            self._rows.popitem(last=False)
        return row

    def forget(self, token_id: str) -> None:
        """Drop the token with this id (it was revoked here)."""
        for key, (_, row) in list(self._rows.items()):
            if row["id"] == token_id:
                del self._rows[key]

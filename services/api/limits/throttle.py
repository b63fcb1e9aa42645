"""Failed authentications per client address: an address that presents too many unknown
or revoked tokens waits before it may try again.

Policy: `limit` failures within WINDOW_S block the address for BLOCK_S; each further
block of the same address doubles that, up to MAX_BLOCK_S, and an address that has not
been blocked for MAX_BLOCK_S starts again from BLOCK_S. A request without a token is no
guess and counts for nothing.

While an address waits its requests are refused before any token lookup, so a guesser
costs a dictionary read, not a query. Tokens this process has seen valid still pass
(they are looked up as usual, so a revocation holds at once): people behind the same
NAT or proxy as a guesser keep working.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

WINDOW_S = 60.0
BLOCK_S = 60.0
MAX_BLOCK_S = 3600.0
# Memory bounds: addresses tracked at once, and valid tokens (their digests) remembered.
MAX_ADDRESSES = 100_000
MAX_KNOWN = 10_000


@dataclass
class _Address:
    failures: deque[float] = field(default_factory=deque)
    blocked_until: float = 0.0
    blocks: int = 0


class AuthThrottle:
    """Counts failed authentications by client address; `limit` 0 counts nothing."""

    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._addresses: dict[str, _Address] = {}
        self._known: OrderedDict[str, None] = OrderedDict()

    def wait_s(self, address: str, digest: str) -> int:
        """Seconds `address` must wait before presenting the token `digest`; 0: go ahead."""
        state = self._addresses.get(address)
        if state is None or digest in self._known:
            return 0
        left = state.blocked_until - self._clock()
        return math.ceil(left) if left > 0 else 0

    def failed(self, address: str, digest: str) -> None:
        """`address` presented `digest`, which is no valid token."""
        self._known.pop(digest, None)  # revoked since it was seen valid
        if self.limit <= 0:
            return
        now = self._clock()
        state = self._addresses.get(address) or self._track(address, now)
        while state.failures and state.failures[0] <= now - WINDOW_S:
            state.failures.popleft()
        state.failures.append(now)
        if len(state.failures) < self.limit:
            return
        if now - state.blocked_until > MAX_BLOCK_S:
            state.blocks = 0  # quiet long enough: start again from the shortest wait
        state.blocks += 1
        state.blocked_until = now + min(BLOCK_S * 2 ** (state.blocks - 1), MAX_BLOCK_S)
        state.failures.clear()

    def succeeded(self, digest: str) -> None:
        """`digest` is a valid token: it passes even from an address that waits."""
        self._known[digest] = None
        self._known.move_to_end(digest)
        if len(self._known) > MAX_KNOWN:
            self._known.popitem(last=False)

    def _track(self, address: str, now: float) -> _Address:
        if len(self._addresses) >= MAX_ADDRESSES:
            self._forget_idle(now)
        if len(self._addresses) >= MAX_ADDRESSES:
            # Still full (many addresses guessing at once): the longest-tracked goes.
            del self._addresses[next(iter(self._addresses))]
        state = self._addresses[address] = _Address()
        return state

    def _forget_idle(self, now: float) -> None:
        """Drop addresses with no recent failure whose blocks would no longer grow."""
        idle = [
            address
            for address, state in self._addresses.items()
            if (not state.failures or state.failures[-1] <= now - WINDOW_S) and now - state.blocked_until > MAX_BLOCK_S
        ]
        for address in idle:
            del self._addresses[address]

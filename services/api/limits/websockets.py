"""At most N websockets open at once per token: one more is refused with close code 4429.

Counted for the whole life of the socket's handler, across every websocket route; a
socket that closes gives its place back at once.
"""

from __future__ import annotations

from collections import Counter

from litestar.enums import ScopeType
from litestar.exceptions import WebSocketException
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from services.api.auth import Principal

# As the api's other refusals of a websocket: 4000 + the HTTP status (429 Too Many Requests).
TOO_MANY = 4429


class SocketSlots:
    """Open websockets per token id, in this process."""

    def __init__(self, per_token: int) -> None:
        self.per_token = per_token
        self._open: Counter[str] = Counter()

    def take(self, token_id: str) -> bool:
        """Count one more socket for `token_id`, unless it has its `per_token` already."""
        if self._open[token_id] >= self.per_token:
            return False
        self._open[token_id] += 1
        return True

    def give_back(self, token_id: str) -> None:
        self._open[token_id] -= 1
        if self._open[token_id] <= 0:
            del self._open[token_id]

    def open(self, token_id: str) -> int:
        return self._open[token_id]


class SocketLimit(ASGIMiddleware):
    """Refuses a token's websocket beyond its `SocketSlots` (after authentication)."""

    scopes = (ScopeType.WEBSOCKET,)

    def __init__(self, slots: SocketSlots) -> None:
        # One counter for the app: Litestar builds a middleware stack per route from this one instance.
        self.slots = slots

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        user = scope.get("user")
        if not isinstance(user, Principal):  # no token: the handler's guard refuses it
            await next_app(scope, receive, send)
            return
        slots = self.slots
        if not slots.take(user.id):
            raise WebSocketException(
                detail=f"too many websockets for this token: at most {slots.per_token} at once; close one first",
                code=TOO_MANY,
            )
        try:
            await next_app(scope, receive, send)
        finally:
            slots.give_back(user.id)

"""Websocket refusals that clients can read.

The api refuses a websocket with a close code (4401 no valid token, 4403 not allowed,
4404 no such job). Closed before the handshake is accepted, a server answers the
handshake with a bare HTTP 403 instead, and browsers and the CLI see neither code
nor reason. This ASGI wrapper accepts first when a close comes before the accept,
so the close frame, with its code and reason, reaches the client.
"""

from __future__ import annotations

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send


def readable_refusals(app: ASGIApp) -> ASGIApp:
    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.WEBSOCKET:
            await app(scope, receive, send)
            return
        accepted = False

        async def send_readably(message: Message) -> None:
            nonlocal accepted
            if message["type"] == "websocket.accept":
                accepted = True
            elif message["type"] == "websocket.close" and not accepted:
                accepted = True
                await send({"type": "websocket.accept", "subprotocol": None, "headers": []})
            await send(message)

        await app(scope, receive, send_readably)

    return wrapped

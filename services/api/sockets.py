"""Running a websocket's sender until it is done or the client goes away."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from litestar import WebSocket
from litestar.exceptions import WebSocketDisconnect

log = logging.getLogger(__name__)

Socket = WebSocket[Any, Any, Any]


async def _until_disconnect(socket: Socket) -> None:
    # Clients send nothing we need; reading is how a disconnect becomes visible.
    with contextlib.suppress(WebSocketDisconnect):
        async for _ in socket.iter_data("text"):
            pass


async def serve(socket: Socket, sender: Coroutine[Any, Any, None]) -> None:
    """Run `sender` until it returns (then close) or the client disconnects (then stop it)."""
    send_task = asyncio.create_task(sender, name="ws-send")
    watch_task = asyncio.create_task(_until_disconnect(socket), name="ws-watch")
    try:
        done, _ = await asyncio.wait({send_task, watch_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Cancelled from outside (shutdown) or one side finished: stop the other side.
        for task in (send_task, watch_task):
            task.cancel()
        await asyncio.gather(send_task, watch_task, return_exceptions=True)
    if watch_task in done or send_task not in done or send_task.cancelled():
        return  # the client left
    error = send_task.exception()
    code = 1000
    if error is not None and not isinstance(error, WebSocketDisconnect):
        log.error("websocket sender failed: %s", type(error).__name__, exc_info=error)
        code = 1011
    with contextlib.suppress(Exception):
        await socket.close(code=code)

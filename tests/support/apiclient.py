"""The api served for real (uvicorn, in the test's event loop) and a client for it.

Litestar's test client runs the app on an event loop of its own in a helper thread; with
NATS connections, subscriptions and request/reply answered across the two loops, replies
went unnoticed and teardowns hung now and then. Served like `borgflow api` serves it, on
a free port, the api shares the test's loop and its connections, and is reached over
real HTTP and real websockets.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any

import httpx
import msgspec
from litestar.exceptions import WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from services.api.app import ApiDeps, run
from shared.config import Settings
from shared.testing import free_port
from tests.support.waiting import eventually


class Socket:
    """A websocket to the api; a close (or a refusal) raises WebSocketDisconnect with its code."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self._url = url
        self._headers = {k: v for k, v in headers.items() if v}
        self._conn: ClientConnection | None = None

    async def __aenter__(self) -> Socket:
        self._conn = await connect(self._url, additional_headers=self._headers)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._conn is not None:
            await self._conn.close()

    async def receive_json(self, timeout: float = 5.0) -> Any:
        assert self._conn is not None, "use the socket in `async with`"
        try:
            raw = await asyncio.wait_for(self._conn.recv(), timeout)
        except ConnectionClosed as e:
            code = e.rcvd.code if e.rcvd is not None else 1006
            raise WebSocketDisconnect(detail=e.rcvd.reason if e.rcvd else "", code=code) from None
        return json.loads(raw)

    async def closed_with(self, timeout: float = 5.0) -> int:
        """The close code the api ends (or refuses) the socket with."""
        try:
            while True:
                await self.receive_json(timeout)
        except WebSocketDisconnect as e:
            return int(e.code)


class ApiClient(httpx.AsyncClient):
    """An httpx client of the served api, with websockets to it."""

    def websocket(self, path: str, headers: dict[str, str] | None = None) -> Socket:
        base = str(self.base_url).replace("http://", "ws://", 1).rstrip("/")
        # The token only: httpx's own headers (Connection: keep-alive) would spoil the upgrade.
        merged = {"Authorization": self.headers.get("Authorization", "")} | (headers or {})
        return Socket(base + path, merged)


@asynccontextmanager
async def served_api(settings: Settings, deps: ApiDeps, headers: dict[str, str]) -> AsyncIterator[ApiClient]:
    """The api on a free port until the block ends; a client of it with `headers`."""
    port = free_port()
    stop = asyncio.Event()
    serving = asyncio.create_task(run(msgspec.structs.replace(settings, listen_port=port), stop, deps))
    async with ApiClient(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=20) as client:

        async def up() -> bool:
            if serving.done():
                serving.result()  # it failed to start: say why
            try:
                return (await client.get("/api/health")).status_code in (200, 503)
            except httpx.TransportError:
                return False

        await eventually(up, timeout=30, what="the api serving")
        try:
            yield client
        finally:
            stop.set()
            await asyncio.wait_for(serving, 15)

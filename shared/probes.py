"""`/healthz` and `/metrics` for every process, on BORGFLOW_METRICS_LISTEN.

Each service registers what it needs before it can be called healthy (NATS
connected, its streams read up to now, its lease bucket reachable); `/healthz`
answers 200 when no registered check reports a problem, else 503 naming them.
Registrations are process-wide, so `borgflow up`, which runs every service in one
process, is healthy when all of them are.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import msgspec
import uvicorn

from shared import metrics

log = logging.getLogger(__name__)

# A check says what is wrong, or None when all is well (it may be a coroutine function).
Check = Callable[[], str | Awaitable[str | None] | None]
CHECK_TIMEOUT_S = 3.0
_checks: dict[str, Check] = {}

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def register(name: str, check: Check) -> None:
    _checks[name] = check


def starting(name: str) -> None:
    """Say `name` is not ready yet, until its service registers its own check (same name)."""
    _checks.setdefault(name, lambda: "starting")


def unregister(name: str) -> None:
    _checks.pop(name, None)


@contextlib.contextmanager
def registered(name: str, check: Check) -> Generator[None, None, None]:
    """Register `check` for the duration of a block (a service's lifetime)."""
    register(name, check)
    try:
        yield
    finally:
        register(name, lambda: "stopping")


async def problems() -> dict[str, str]:
    """What keeps this process from being healthy, by service; empty when healthy."""
    out: dict[str, str] = {}
    for name, check in list(_checks.items()):
        try:
            answer = check()
            problem = await asyncio.wait_for(answer, CHECK_TIMEOUT_S) if inspect.isawaitable(answer) else answer
        except Exception as e:  # a check must never turn the probe into a 500
            problem = f"check failed: {type(e).__name__}"
        if problem:
            out[name] = problem
    return out


async def respond(send: Send, status: int, body: bytes, content_type: str) -> None:
    headers = [(b"content-type", content_type.encode()), (b"cache-control", b"no-store")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def not_http(scope: dict[str, Any], receive: Receive, send: Send) -> bool:
    """Answer what is not an HTTP request (uvicorn's lifespan messages); True when it was not."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
    return bool(scope["type"] != "http")


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """The probe endpoints as a tiny ASGI app: GET /healthz, GET /metrics."""
    if await not_http(scope, receive, send):
        return
    path = scope["path"]
    if scope["method"] not in ("GET", "HEAD"):
        await respond(send, 405, b'{"detail":"only GET"}', "application/json")
    elif path == "/healthz":
        wrong = await problems()
        body = msgspec.json.encode({"status": "starting", "problems": wrong} if wrong else {"status": "ok"})
        await respond(send, 503 if wrong else 200, body, "application/json")
    elif path == "/metrics":
        await respond(send, 200, await metrics.render(), "text/plain; version=0.0.4; charset=utf-8")
    else:
        await respond(send, 404, b'{"detail":"try /healthz or /metrics"}', "application/json")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the process's stop event decides."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def split_listen(listen: str) -> tuple[str, int]:
    """`HOST:PORT` (or `:PORT`, meaning every interface) as (host, port)."""
    host, _, port = listen.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"BORGFLOW_METRICS_LISTEN must be HOST:PORT, not {listen!r}")
    return host or "0.0.0.0", int(port)


async def serve(listen: str, stop: asyncio.Event) -> None:
    """Serve /healthz and /metrics on `listen` until `stop` is set."""
    await serve_asgi(app, listen, stop)


async def serve_asgi(asgi: Callable[..., Awaitable[None]], listen: str, stop: asyncio.Event) -> None:
    """Serve a small ASGI app on `listen` until `stop` is set."""
    host, port = split_listen(listen)
    config = uvicorn.Config(
        asgi, host=host, port=port, interface="asgi3", lifespan="off", log_level="warning", access_log=False
    )
    server = _Server(config)

    async def stop_when_told() -> None:
        await stop.wait()
        server.should_exit = True

    watcher = asyncio.create_task(stop_when_told(), name="probes-stop")
    log.info("serving /healthz and /metrics on %s:%d", host, port)
    try:
        await server.serve()
    finally:
        watcher.cancel()

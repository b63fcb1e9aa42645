"""Notifier test fixtures: local HTTP receivers for apprise's json://, the notifier run as a task."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

import asyncpg
import pytest
import pytest_asyncio
from nats.js import JetStreamContext

from services.notifier.app import CONSUMERS, DURABLE, AfterHandled, NotifierOptions
from services.notifier.app import run as notifier
from services.projector.app import run as projector
from shared import ids
from shared.config import Settings
from shared.testing import NatsServer
from tests.scheduler.helpers import Running
from tests.support.waiting import eventually

PAGE_URL = "http://bf.example:8080"
# Retries in tenths of a second, so giving up takes well under a second.
FAST = NotifierOptions(backoff_s=(0.1, 0.2), ack_wait_s=2.0, read_model_wait_s=5.0)


class Receiver:
    """An HTTP endpoint apprise's json:// posts to; it can refuse the next few posts."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.attempts = 0
        self.refuse = 0
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with lock:
                    outer.attempts += 1
                    refused = outer.refuse != 0
                    if refused:
                        outer.refuse -= 1
                    else:
                        outer.bodies.append(json.loads(raw))
                self.send_response(500 if refused else 200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"

    def titles(self) -> list[str]:
        return [b["title"] for b in self.bodies]


@pytest.fixture
def receivers() -> Iterator[Callable[[], Receiver]]:
    made: list[Receiver] = []

    def make() -> Receiver:
        made.append(Receiver())
        return made[-1]

    yield make
    for r in made:
        r.server.shutdown()


@pytest.fixture
def settings(nats_server: NatsServer, database_url: str) -> Settings:
    return Settings(nats_url=nats_server.url, database_url=database_url, api_url=PAGE_URL)


@pytest_asyncio.fixture(loop_scope="session")
async def running(settings: Settings) -> AsyncIterator[Running]:
    r = Running()
    yield r
    await r.stop_all()


class StartNotifier(Protocol):
    def __call__(
        self, options: NotifierOptions = ..., after_handled: AfterHandled | None = ...
    ) -> Awaitable[tuple[asyncio.Task[None], asyncio.Event]]: ...


async def consumers_ready(js: JetStreamContext) -> bool:
    for stream, _ in CONSUMERS:
        try:
            await js.consumer_info(stream, DURABLE)
        except Exception:
            return False
    return True


@pytest_asyncio.fixture(loop_scope="session")
async def start_notifier(running: Running, settings: Settings, js: JetStreamContext) -> StartNotifier:
    """Start a notifier (and, once, the projector it reads plan histories from)."""
    running.start(lambda stop: projector(settings, stop))

    async def start(
        options: NotifierOptions = FAST, after_handled: AfterHandled | None = None
    ) -> tuple[asyncio.Task[None], asyncio.Event]:
        started = running.start(lambda stop: notifier(settings, stop, options=options, after_handled=after_handled))
        # Its durable consumers deliver only events appended after they exist.
        await eventually(lambda: consumers_ready(js), what="the notifier's consumers")
        return started

    return start


async def add_target(
    pool: asyncpg.Pool, url: str, events: list[str], *, name: str = "ops", project: str = "default"
) -> str:
    target_id = ids.new_id()
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO notifications (id, name, url, events, project) VALUES ($1, $2, $3, $4, $5)",
            target_id,
            name,
            url,
            events,
            project,
        )
    return target_id


async def ledger(pool: asyncpg.Pool, target_id: str) -> list[dict[str, Any]]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT event_id, event_type, job_id, ok, error FROM deliveries WHERE target_id = $1 ORDER BY at",
            target_id,
        )
    return [dict(r) for r in rows]

"""Scheduler test fixtures: settings for the private NATS and database, services run as tasks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import pytest_asyncio

from shared.config import Settings
from shared.testing import NatsServer
from tests.scheduler.helpers import FakeClock, Running

T0 = datetime(2026, 11, 23, 10, 0, 30, tzinfo=UTC)


@pytest.fixture
def settings(nats_server: NatsServer, database_url: str) -> Settings:
    return Settings(nats_url=nats_server.url, database_url=database_url, api_url="http://bf.example:8080")


@pytest_asyncio.fixture(loop_scope="session")
async def running(settings: Settings) -> AsyncIterator[Running]:
    # Depends on `settings` so the services stop before NATS and the database go away.
    r = Running()
    yield r
    await r.stop_all()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)

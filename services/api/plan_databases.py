"""A plan's databases: their passwords sealed in `plan_secrets`, a plan's config holding only `has_password`.

A password is written in the transaction that writes its plan, so a plan never names a
password that is not stored, nor is one left of a database the plan no longer dumps.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from msgspec import UNSET

from services.api.errors import Invalid, Unavailable
from services.api.runtime import Runtime
from services.api.schemas import DatabaseIn
from shared import secretrows
from shared.exceptions import ConfigError, SecretUnreadable
from shared.submit import InvalidRequest, check_database_name


def key_of(db: DatabaseIn) -> str:
    return f"{db.kind}/{db.database}"


def check(databases: list[DatabaseIn]) -> None:
    """Each database once, with a name that can be its dump's file name; Invalid names the field."""
    seen: set[str] = set()
    for db in databases:
        try:
            check_database_name(db.database, "databases")
        except InvalidRequest as e:
            raise Invalid(e.detail, "databases") from None
        if key_of(db) in seen:
            raise Invalid(f"databases: {db.kind} database {db.database!r} is named twice", "databases")
        seen.add(key_of(db))


def config(databases: list[DatabaseIn], with_password: set[str]) -> list[dict[str, Any]]:
    """The databases as the plan's config keeps them: no password, `has_password` instead."""
    return [
        {
            "kind": db.kind,
            "host": db.host,
            "port": db.port,
            "user": db.user,
            "database": db.database,
            "has_password": key_of(db) in with_password,
        }
        for db in databases
    ]


def kept(databases: list[DatabaseIn], stored: set[str]) -> set[str]:
    """The databases that will have a password: given one, or given none and one is stored."""
    out = set()
    for db in databases:
        if isinstance(db.password, str) or (db.password is UNSET and key_of(db) in stored):
            out.add(key_of(db))
    return out


async def stored(conn: asyncpg.Connection, plan_id: str) -> set[str]:
    """The `<kind>/<database>` of the plan's stored passwords."""
    rows = await conn.fetch("SELECT id FROM plan_secrets WHERE plan_id = $1", plan_id)
    prefix = plan_id + "/"
    return {r["id"].removeprefix(prefix) for r in rows}


async def write(rt: Runtime, conn: asyncpg.Connection, plan_id: str, databases: list[DatabaseIn]) -> None:
    """Seal the given passwords and drop the removed ones, in `conn`'s transaction."""
    keep = kept(databases, await stored(conn, plan_id))
    given = [db for db in databases if isinstance(db.password, str)]
    if given:
        await secretrows.lock_for_sealing(conn)
    rows = []
    for db in given:
        row_id = secretrows.plan_database_id(plan_id, db.kind, db.database)
        assert isinstance(db.password, str)
        try:
            sealed = secretrows.seal(rt.secret_keys, secretrows.DATABASE_PASSWORD, row_id, db.password)
        except ConfigError as e:
            raise Unavailable(f"the database password cannot be stored: {e}") from None
        rows.append((row_id, plan_id, sealed))
    await conn.executemany(
        "INSERT INTO plan_secrets (id, plan_id, sealed) VALUES ($1, $2, $3)"
        " ON CONFLICT (id) DO UPDATE SET sealed = EXCLUDED.sealed",
        rows,
    )
    keep_ids = [secretrows.plan_database_id(plan_id, *key.split("/", 1)) for key in keep]
    await conn.execute("DELETE FROM plan_secrets WHERE plan_id = $1 AND NOT (id = ANY($2::text[]))", plan_id, keep_ids)


async def passwords(rt: Runtime, plan_id: str) -> dict[str, str]:
    """The plan's database passwords by `<kind>/<database>` (for its running job's executor)."""
    rows = await rt.pool.fetch("SELECT id, sealed FROM plan_secrets WHERE plan_id = $1", plan_id)
    out: dict[str, str] = {}
    prefix = plan_id + "/"
    for r in rows:
        try:
            out[r["id"].removeprefix(prefix)] = secretrows.unseal(
                rt.secret_keys, secretrows.DATABASE_PASSWORD, r["id"], r["sealed"]
            )
        except (SecretUnreadable, ConfigError) as e:
            raise Unavailable(str(e)) from None
    return out

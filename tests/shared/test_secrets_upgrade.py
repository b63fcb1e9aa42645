"""Upgrading a database from before secrets at rest: its plain-text passphrases are encrypted in
the same transaction as the migrations, and a process without the key changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import pytest_asyncio

from shared import db, ids
from shared.secretbox import key_label, key_text, new_key
from shared.secretkeys import KeySource
from shared.secretrows import PASSPHRASE, migration_steps, unseal

BEFORE = "0005_job_counts"  # the last version with plain-text passphrases


@pytest_asyncio.fixture(loop_scope="session")
async def old_database(pg_admin_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A database migrated up to BEFORE only, holding repositories with and without a passphrase."""
    name = "t_" + ids.new_id()
    admin = await asyncpg.connect(pg_admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    conn = await db.connect(urlunsplit(urlsplit(pg_admin_url)._replace(path="/" + name)))
    try:
        await conn.execute(
            "CREATE TABLE schema_migrations (version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for version, sql in db.migrations():
            if version <= BEFORE:
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
        await conn.executemany(
            "INSERT INTO repositories (id, name, location, agent, passphrase) VALUES ($1, $1, '/srv/r', 'local', $2)",
            [("r1", "plain one"), ("r2", "plain two"), ("r3", None)],
        )
        yield conn
    finally:
        await conn.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_plain_text_passphrases_are_encrypted_on_upgrade(old_database: asyncpg.Connection) -> None:
    key = new_key()
    keys = KeySource(env_value=key_text(key), path=None)
    applied = await db.migrate(old_database, migration_steps(keys))
    assert {"0006_secrets_at_rest", "0007_plain_passphrases_dropped"} <= set(applied)

    columns = {
        r["column_name"]
        for r in await old_database.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'repositories'"
        )
    }
    assert "passphrase" not in columns and "passphrase_enc" in columns
    rows = {
        r["id"]: r["passphrase_enc"] for r in await old_database.fetch("SELECT id, passphrase_enc FROM repositories")
    }
    assert rows["r3"] is None
    assert unseal(keys, PASSPHRASE, "r1", rows["r1"]) == "plain one"
    assert unseal(keys, PASSPHRASE, "r2", rows["r2"]) == "plain two"
    assert b"plain" not in rows["r1"] + rows["r2"]
    assert key_label(key) in {
        r["k"]
        for r in await old_database.fetch(
            "SELECT 'k-' || encode(substring(passphrase_enc FROM 2 FOR 8), 'hex') AS k FROM repositories"
        )
    }

    # Idempotent: run again, nothing to do and nothing changes.
    assert await db.migrate(old_database, migration_steps(keys)) == []
    again = {
        r["id"]: r["passphrase_enc"] for r in await old_database.fetch("SELECT id, passphrase_enc FROM repositories")
    }
    assert again == rows


async def test_migrating_without_the_key_leaves_the_old_database_as_it_was(old_database: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.RaiseError, match="plain-text passphrases: upgrade by starting `borgflow api`"):
        await db.migrate(old_database)  # as a process without the key (no Python step) would
    versions = [r["version"] for r in await old_database.fetch("SELECT version FROM schema_migrations ORDER BY 1")]
    assert versions[-1] == BEFORE
    assert await old_database.fetchval("SELECT passphrase FROM repositories WHERE id = 'r1'") == "plain one"

"""Every secret borgflow keeps in Postgres, encrypted, and what is done to all of them at once.

Writers seal under `lock_for_sealing` (a shared advisory lock, for their transaction) and a
rotation re-encrypts under `lock_for_rotation` (the same lock, exclusive). So a write that
took its key before the rotation put the new key in the key file is committed before the
rotation reads the rows, and is re-encrypted with them: nothing is left under a key that the
rotation then drops. A write that starts later reads the new key file (shared/secretkeys.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

from shared.db import Conn, Step
from shared.secretbox import Keyring, label, sealed_key_label
from shared.secretkeys import KeySource

log = logging.getLogger(__name__)

_LOCK = 7_263_452  # beside db._MIGRATION_LOCK
_ROTATION = 7_263_453


@dataclass(frozen=True)
class SecretColumn:
    """A bytea column of sealed secrets, in a table whose rows have a text `id`."""

    table: str
    column: str
    noun: str  # what a row is, for messages: "repository"
    name: str  # what the secret is: "passphrase"

    def context(self, row_id: str) -> str:
        """The associated data: a sealed value opens only in the row it was sealed for."""
        return f"{self.table}.{self.column}:{row_id}"

    def what(self, row_id: str) -> str:
        return f"the {self.name} of {self.noun} {row_id}"


PASSPHRASE = SecretColumn(table="repositories", column="passphrase_enc", noun="repository", name="passphrase")
# A row per database a plan dumps: its id is `<plan id>/<kind>/<database>` (plan_database_id).
DATABASE_PASSWORD = SecretColumn(table="plan_secrets", column="sealed", noun="plan database", name="password")
# A restore's target password, by job id.
TARGET_PASSWORD = SecretColumn(table="job_secrets", column="sealed", noun="job", name="target database password")
# Every encrypted column: a later secret is one more entry, and rotation and the start-up
# check cover it.
COLUMNS = (PASSPHRASE, DATABASE_PASSWORD, TARGET_PASSWORD)


def plan_database_id(plan_id: str, kind: str, database: str) -> str:
    """The row of a plan database's password: one per (kind, database) of the plan."""
    return f"{plan_id}/{kind}/{database}"


async def lock_for_sealing(conn: Conn) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", _LOCK)


async def lock_for_rotation(conn: Conn) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)


async def claim_rotation(conn: Conn) -> bool:
    """One rotation at a time, for as long as `conn` is open: two would write the key file in turn."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", _ROTATION))


def seal(keys: KeySource, column: SecretColumn, row_id: str, secret: str) -> bytes:
    return keys.keyring().seal(secret, column.context(row_id))


def unseal(keys: KeySource, column: SecretColumn, row_id: str, sealed: bytes) -> str:
    """The secret, or a SecretUnreadable that says which key it needs (never garbage)."""
    return keys.keyring().open(sealed, column.context(row_id), column.what(row_id))


async def reseal(conn: Conn, ring: Keyring) -> tuple[int, int]:
    """Re-encrypt every secret under `ring`'s newest key: (re-encrypted, all secrets).

    Run in a transaction holding `lock_for_rotation`; secrets already under the newest key stay.
    """
    changed = total = 0
    for col in COLUMNS:
        rows = await conn.fetch(
            f"SELECT id, {col.column} AS sealed FROM {col.table} WHERE {col.column} IS NOT NULL FOR UPDATE"
        )
        total += len(rows)
        updates = []
        for r in rows:
            if sealed_key_label(r["sealed"]) == ring.newest_label:
                continue
            secret = ring.open(r["sealed"], col.context(r["id"]), col.what(r["id"]))
            updates.append((r["id"], ring.seal(secret, col.context(r["id"]))))
        await conn.executemany(f"UPDATE {col.table} SET {col.column} = $2 WHERE id = $1", updates)
        changed += len(updates)
    return changed, total


async def keys_in_use(conn: Conn) -> dict[str, int]:
    """How many secrets each key (by label) encrypts."""
    counts: dict[str, int] = {}
    for col in COLUMNS:
        rows = await conn.fetch(
            f"SELECT substring({col.column} FROM 2 FOR 8) AS kid, count(*) AS n FROM {col.table}"
            f" WHERE {col.column} IS NOT NULL GROUP BY 1"
        )
        for r in rows:
            counts[label(r["kid"])] = counts.get(label(r["kid"]), 0) + int(r["n"])
    return counts


async def unheld_keys(conn: Conn, ring: Keyring) -> dict[str, int]:
    """Keys secrets are encrypted with that `ring` does not hold, and how many secrets each."""
    return {k: n for k, n in (await keys_in_use(conn)).items() if k not in ring.labels}


async def check_keys(conn: Conn, keys: KeySource) -> None:
    """Log every key secrets are encrypted with that `keys` lacks: a lost or unset key shows at
    start, not at the next backup."""
    ring = keys.keyring()
    for kid, n in (await unheld_keys(conn, ring)).items():
        log.error(
            "%d secrets are encrypted with key %s, which %s does not hold: set the key they were encrypted with",
            n,
            kid,
            ring.source,
            extra={"action": "secrets.key_missing", "key": kid},
        )


def migration_steps(keys: KeySource) -> dict[str, Step]:
    """The Python parts of migrations, for `db.migrate` (the key is read only when needed)."""

    async def seal_plain_passphrases(conn: asyncpg.Connection) -> None:
        rows = await conn.fetch("SELECT id, passphrase FROM repositories WHERE passphrase IS NOT NULL FOR UPDATE")
        if not rows:
            return
        await lock_for_sealing(conn)  # as every writer does, so a rotation waits for this
        ring = keys.keyring()
        updates = [(r["id"], ring.seal(r["passphrase"], PASSPHRASE.context(r["id"]))) for r in rows]
        await conn.executemany("UPDATE repositories SET passphrase_enc = $2, passphrase = NULL WHERE id = $1", updates)
        log.info(
            "encrypted %d plain-text passphrases under key %s",
            len(rows),
            ring.newest_label,
            extra={"action": "secrets.upgrade"},
        )

    return {"0006_secrets_at_rest": seal_plain_passphrases}

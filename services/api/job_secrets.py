"""Secrets a job runs with beyond its repository's passphrase: its plan's database passwords
(backups and plugin tests dump them) and a database restore's target password.

A restore's target password comes in the job's body. The job's events keep only a mask of
it (shared/submit.py), and the password itself is sealed into `job_secrets` under the job's
id before its `job.queued` is appended, so its executor can always fetch it, and only while
the job is sent or running, as it fetches the passphrase.
"""

from __future__ import annotations

from services.api import plan_databases
from services.api.errors import Unavailable
from services.api.runtime import Runtime
from shared import secretrows
from shared.db import Conn
from shared.exceptions import ConfigError, SecretUnreadable
from shared.jobs import JobView

DUMPING_TYPES = frozenset({"backup", "plugin_test"})
RESTORING_TYPES = frozenset({"restore_pg", "restore_mysql"})


async def store_target_password(rt: Runtime, conn: Conn, job_id: str, password: str) -> None:
    async with conn.transaction():
        await secretrows.lock_for_sealing(conn)
        try:
            sealed = secretrows.seal(rt.secret_keys, secretrows.TARGET_PASSWORD, job_id, password)
        except ConfigError as e:
            raise Unavailable(f"the target password cannot be stored: {e}") from None
        await conn.execute(
            "INSERT INTO job_secrets (id, sealed) VALUES ($1, $2)"
            " ON CONFLICT (id) DO UPDATE SET sealed = EXCLUDED.sealed",
            job_id,
            sealed,
        )


async def target_password(rt: Runtime, job_id: str) -> str | None:
    sealed = await rt.pool.fetchval("SELECT sealed FROM job_secrets WHERE id = $1", job_id)
    if sealed is None:
        return None
    try:
        return secretrows.unseal(rt.secret_keys, secretrows.TARGET_PASSWORD, job_id, sealed)
    except (SecretUnreadable, ConfigError) as e:
        raise Unavailable(str(e)) from None


async def copy_target_password(rt: Runtime, conn: Conn, from_job: str, to_job: str) -> None:
    """A retry of a restore restores with the password its original was given."""
    password = await target_password(rt, from_job)
    if password is not None:
        await store_target_password(rt, conn, to_job, password)


async def drop(conn: Conn, job_id: str) -> None:
    await conn.execute("DELETE FROM job_secrets WHERE id = $1", job_id)


async def of_job(rt: Runtime, view: JobView) -> tuple[dict[str, str], str | None]:
    """The job's database passwords by `<kind>/<database>`, and its target password."""
    databases = await plan_databases.passwords(rt, view.plan_id) if view.plan_id and view.type in DUMPING_TYPES else {}
    target = await target_password(rt, view.id) if view.type in RESTORING_TYPES else None
    return databases, target

"""A plan's database passwords and a restore's target password: stored only encrypted, never
answered, masked in the job and its events, and given to the job's executor while it runs."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec
from nats.js import JetStreamContext

from shared import bus, secretrows
from shared.events import JobFailed, JobQueued, JobSent, JobStarted, OutcomeData, SentData, StartedData
from shared.secretbox import Keyring, new_key, parse_key
from shared.submit import MASK
from tests.api.conftest import SECRET_KEY, Client, advance, auth, make_plan, make_repository
from tests.api.test_secrets_at_rest import dump_tables, forms
from tests.executor.conftest import stream_messages

PG_PASSWORD = "pg pässword 1!"
MY_PASSWORD = "my-secret-2"
TARGET_PASSWORD = "target password 3"


def databases(pg_password: str | None = PG_PASSWORD) -> list[dict[str, Any]]:
    pg = {"kind": "postgresql", "host": "127.0.0.1", "port": 5432, "user": "postgres", "database": "app"}
    if pg_password is not None:
        pg["password"] = pg_password
    my = {"kind": "mysql", "host": "127.0.0.1", "port": 3306, "user": "root", "database": "app"}
    return [pg, my | {"password": MY_PASSWORD}]


async def running(js: JetStreamContext, pool: asyncpg.Pool, job_id: str) -> None:
    await advance(
        js,
        pool,
        job_id,
        JobSent(job_id=job_id, data=SentData(agent="local")),
        JobStarted(job_id=job_id, data=StartedData(agent="local")),
    )


async def test_a_plans_database_passwords_are_kept_apart_and_given_only_to_its_running_jobs(
    client: Client, js: JetStreamContext, pool: asyncpg.Pool, agent_token: str
) -> None:
    repo = await make_repository(client, passphrase=None)
    plan = await make_plan(client, repo["id"], databases=databases())
    assert [d["has_password"] for d in plan["databases"]] == [True, True]
    assert all("password" not in d for d in plan["databases"])

    # A plan sent back as GET showed it keeps its passwords.
    again = await client.put(f"/api/plans/{plan['id']}", json=plan)
    assert again.status_code == 200, again.text
    assert [d["has_password"] for d in again.json()["databases"]] == [True, True]

    job = (await client.post("/api/jobs", json={"type": "backup", "plan_id": plan["id"]})).json()
    queued = next(e.data for e, _ in await bus.job_events(js, job["id"]) if isinstance(e, JobQueued))
    assert queued.plan is not None
    assert msgspec.to_builtins(queued.plan.databases[0]) == {
        "kind": "postgresql",
        "host": "127.0.0.1",
        "port": 5432,
        "user": "postgres",
        "database": "app",
        "has_password": True,
    }
    early = await client.get(f"/api/jobs/{job['id']}/secret", headers=auth(agent_token))
    assert early.status_code == 403  # queued: not yet
    await running(js, pool, job["id"])
    r = await client.get(f"/api/jobs/{job['id']}/secret", headers=auth(agent_token))
    assert r.status_code == 200
    assert r.json() == {"passphrase": None, "databases": {"postgresql/app": PG_PASSWORD, "mysql/app": MY_PASSWORD}}

    # null removes one password; a database dropped from the plan takes its password along.
    changed = databases(pg_password=None)
    changed[0]["password"] = None
    r = await client.put(f"/api/plans/{plan['id']}", json={"databases": changed[:1]})
    assert r.status_code == 200 and r.json()["databases"][0]["has_password"] is False
    assert await pool.fetchval("SELECT count(*) FROM plan_secrets WHERE plan_id = $1", plan["id"]) == 0

    dump = await dump_tables(pool) + b"\n".join(await stream_messages(js, "BORGFLOW_JOBS"))
    for secret in (PG_PASSWORD, MY_PASSWORD):
        assert all(form not in dump for form in forms(secret)), secret


async def test_a_restores_target_password_is_masked_in_the_job_and_given_to_its_executor(
    client: Client, js: JetStreamContext, pool: asyncpg.Pool, agent_token: str
) -> None:
    repo = await make_repository(client, passphrase=None)
    target = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "database": "copy", "password": TARGET_PASSWORD}
    body = {"type": "restore_pg", "repository_id": repo["id"], "archive": "a1", "options": {"database": "app"}}
    r = await client.post("/api/jobs", json=body | {"options": {"database": "app", "target": target}})
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["options"]["target"]["password"] == MASK
    await running(js, pool, job["id"])
    secret = (await client.get(f"/api/jobs/{job['id']}/secret", headers=auth(agent_token))).json()
    assert secret == {"passphrase": None, "target_password": TARGET_PASSWORD}

    # A retry restores with the same password.
    await advance(js, pool, job["id"], JobFailed(job_id=job["id"], data=OutcomeData()))
    retry = (await client.post(f"/api/jobs/{job['id']}/retry")).json()
    await running(js, pool, retry["id"])
    secret = (await client.get(f"/api/jobs/{retry['id']}/secret", headers=auth(agent_token))).json()
    assert secret["target_password"] == TARGET_PASSWORD

    dump = await dump_tables(pool) + b"\n".join(await stream_messages(js, "BORGFLOW_JOBS"))
    assert all(form not in dump for form in forms(TARGET_PASSWORD))

    # A schedule's job is stored as given: it may not hold the password.
    schedule = {
        "name": "nightly restore",
        "cron": "0 3 * * *",
        "job": body | {"options": {"database": "app", "target": target}},
    }
    assert (await client.post("/api/schedules", json=schedule)).status_code in (400, 422)


async def test_bad_database_bodies_are_refused_naming_the_field(client: Client) -> None:
    repo = await make_repository(client, passphrase=None)
    twice = databases()[:1] * 2
    r = await client.post(
        "/api/plans", json={"name": "p", "repository_id": repo["id"], "paths": ["/etc"], "databases": twice}
    )
    assert r.status_code in (400, 422) and "named twice" in r.text
    slash = [databases()[0] | {"database": "a/b"}]
    r = await client.post(
        "/api/plans", json={"name": "p", "repository_id": repo["id"], "paths": ["/etc"], "databases": slash}
    )
    assert r.status_code in (400, 422)
    r = await client.post("/api/jobs", json={"type": "plugin_test", "repository_id": repo["id"]})
    assert r.status_code in (400, 422)
    target = {"host": "h", "port": 5432, "user": "u", "database": "d"}
    r = await client.post(
        "/api/jobs",
        json={"type": "restore_mysql", "repository_id": repo["id"], "options": {"database": "x", "target": target}},
    )
    assert r.status_code in (400, 422) and "archive" in r.text


async def test_a_rotation_re_encrypts_database_passwords_with_the_passphrases(
    client: Client, js: JetStreamContext, pool: asyncpg.Pool, agent_token: str
) -> None:
    repo = await make_repository(client, passphrase=None)
    plan = await make_plan(client, repo["id"], databases=databases())
    target = {"host": "h", "port": 5432, "user": "u", "database": "copy", "password": TARGET_PASSWORD}
    body = {"type": "restore_pg", "repository_id": repo["id"], "archive": "a1"}
    job = (await client.post("/api/jobs", json=body | {"options": {"database": "app", "target": target}})).json()
    new = new_key()
    ring = Keyring.of([new, parse_key(SECRET_KEY)], "test")
    async with pool.acquire() as conn, conn.transaction():
        await secretrows.lock_for_rotation(conn)
        changed, total = await secretrows.reseal(conn, ring)
    assert changed == total >= 3
    fresh = Keyring.of([new], "new only")
    rows = await pool.fetch("SELECT id, sealed FROM plan_secrets WHERE plan_id = $1", plan["id"])
    opened = {r["id"]: fresh.open(r["sealed"], secretrows.DATABASE_PASSWORD.context(r["id"]), "x") for r in rows}
    assert sorted(opened.values()) == sorted([MY_PASSWORD, PG_PASSWORD])
    sealed = await pool.fetchval("SELECT sealed FROM job_secrets WHERE id = $1", job["id"])
    assert fresh.open(sealed, secretrows.TARGET_PASSWORD.context(job["id"]), "x") == TARGET_PASSWORD

"""Repositories and plans: create, read, change, delete; the passphrase never comes back."""

from __future__ import annotations

import asyncpg

from tests.api.conftest import PASSPHRASE, Client, make_plan, make_repository


async def test_repository_crud_never_returns_the_passphrase(client: Client, pool: asyncpg.Pool) -> None:
    repo = await make_repository(client)
    assert repo["has_passphrase"] is True
    assert "passphrase" not in repo
    assert repo["project"] == "default" and repo["agent"] == "local"

    listed = (await client.get("/api/repositories")).json()
    assert [r["id"] for r in listed["items"]] == [repo["id"]]
    got = (await client.get(f"/api/repositories/{repo['id']}")).json()
    assert got == repo

    r = await client.put(f"/api/repositories/{repo['id']}", json={"name": "renamed", "passphrase": None})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "renamed" and r.json()["has_passphrase"] is False
    assert r.json()["location"] == repo["location"]

    r = await client.put(f"/api/repositories/{repo['id']}", json={"passphrase": "new secret"})
    assert r.json()["has_passphrase"] is True
    sealed = await pool.fetchval("SELECT passphrase_enc FROM repositories")
    assert sealed is not None and b"new secret" not in sealed  # kept encrypted (tests/api/test_secrets_at_rest.py)

    for r in (listed, got):
        assert PASSPHRASE not in str(r)
    assert (await client.delete(f"/api/repositories/{repo['id']}")).status_code == 204
    assert (await client.get(f"/api/repositories/{repo['id']}")).status_code == 404


async def test_duplicate_repository_name_is_409(client: Client) -> None:
    await make_repository(client, "same")
    r = await client.post("/api/repositories", json={"name": "same", "location": "/x", "agent": "local"})
    assert r.status_code == 409
    assert r.json()["field"] == "name"
    # Another project may use the name.
    r = await client.post(
        "/api/repositories", json={"name": "same", "location": "/x", "agent": "local", "project": "other"}
    )
    assert r.status_code == 201


async def test_repository_in_use_by_a_plan_cannot_be_deleted(client: Client) -> None:
    repo = await make_repository(client)
    plan = await make_plan(client, repo["id"])
    r = await client.delete(f"/api/repositories/{repo['id']}")
    assert r.status_code == 409
    assert "p1" in r.json()["detail"]
    assert (await client.delete(f"/api/plans/{plan['id']}")).status_code == 204
    assert (await client.delete(f"/api/repositories/{repo['id']}")).status_code == 204


async def test_archives_of_a_repository(client: Client, pool: asyncpg.Pool) -> None:
    repo = await make_repository(client)
    await pool.execute(
        "INSERT INTO archives (repository_id, name, created, job_id, stats)"
        " VALUES ($1, 'p1-2026-11-23', '2026-11-23T16:20:00Z', 'j1', $2)",
        repo["id"],
        {"nfiles": 3},
    )
    items = (await client.get(f"/api/repositories/{repo['id']}/archives")).json()["items"]
    assert items == [
        {"name": "p1-2026-11-23", "created": "2026-11-23T16:20:00Z", "stats": {"nfiles": 3}, "job_id": "j1"}
    ]
    assert (await client.get("/api/repositories/nope/archives")).status_code == 404


async def test_plan_gets_the_contract_defaults(client: Client, pool: asyncpg.Pool) -> None:
    repo = await make_repository(client)
    plan = await make_plan(client, repo["id"])
    expected = {
        "name": "p1",
        "repository_id": repo["id"],
        "agent": None,
        "paths": ["/etc"],
        "exclude": [],
        "compression": "lz4",
        "archive_name": "{plan}-{now}",
        "retention": {},
        "prune_after": False,
        "compact_after": False,
        "queue_behavior": "cancel",
        "max_queue_depth": 3,
        "stall_timeout_s": 1800,
        "pre_scripts": [],
        "post_scripts": [],
        "retry": {"max_attempts": 0, "delay_s": 60, "backoff": 2},
        "alert_after_s": None,
        "project": "default",
    }
    assert {k: plan[k] for k in expected} == expected
    config = await pool.fetchval("SELECT config FROM plans WHERE id = $1", plan["id"])
    assert config["id"] == plan["id"] and config["queue_behavior"] == "cancel"
    assert (await client.get(f"/api/plans/{plan['id']}")).json() == plan
    assert [p["id"] for p in (await client.get("/api/plans")).json()["items"]] == [plan["id"]]


async def test_plan_update_changes_the_fields_given(client: Client) -> None:
    repo = await make_repository(client)
    plan = await make_plan(client, repo["id"], retention={"keep_daily": 7})
    r = await client.put(f"/api/plans/{plan['id']}", json={"queue_behavior": "queue", "paths": ["/srv", "/etc"]})
    assert r.status_code == 200, r.text
    changed = r.json()
    assert changed["queue_behavior"] == "queue" and changed["paths"] == ["/srv", "/etc"]
    assert changed["retention"] == {"keep_daily": 7} and changed["name"] == "p1"
    # What GET shows may be sent back whole.
    assert (await client.put(f"/api/plans/{plan['id']}", json=changed)).status_code == 200
    r = await client.put(f"/api/plans/{plan['id']}", json={"max_queue_depth": 0})
    assert r.status_code == 400 and r.json()["field"] == "max_queue_depth"  # as POST: the schema says >= 1
    r = await client.put(f"/api/plans/{plan['id']}", json={"repository_id": "missing"})
    assert r.status_code == 422 and r.json()["field"] == "repository_id"
    assert (await client.get(f"/api/plans/{plan['id']}")).json()["queue_behavior"] == "queue"


async def test_plan_in_use_by_a_schedule_cannot_be_deleted(client: Client, pool: asyncpg.Pool) -> None:
    repo = await make_repository(client)
    plan = await make_plan(client, repo["id"])
    await pool.execute(
        "INSERT INTO schedules (id, name, cron, job) VALUES ('s1', 'nightly', '0 3 * * *', $1)",
        {"type": "backup", "plan_id": plan["id"]},
    )
    r = await client.delete(f"/api/plans/{plan['id']}")
    assert r.status_code == 409 and "nightly" in r.json()["detail"]

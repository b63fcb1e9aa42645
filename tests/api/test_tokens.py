"""Tokens: made by an admin and shown once, stored hashed; roles decide what a token may do."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from nats.js import JetStreamContext

from shared.events import JobSent, SentData
from shared.tokens import hash_token
from tests.api.conftest import PASSPHRASE, Client, advance, auth, make_repository


async def _token(
    client: Client, name: str, role: str, headers: dict[str, str] | None = None, **fields: Any
) -> dict[str, Any]:
    r = await client.post("/api/tokens", json={"name": name, "role": role, **fields}, headers=headers)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


async def test_create_list_and_revoke(client: Client, pool: asyncpg.Pool) -> None:
    made = await _token(client, "ci", "operator")
    token = made["token"]
    assert token.startswith("bf_") and made["role"] == "operator" and made["project"] == "default"
    assert made["revoked_at"] is None
    row = await pool.fetchrow("SELECT hash FROM tokens WHERE id = $1", made["id"])
    assert row is not None and row["hash"] == hash_token(token)
    assert token not in str([dict(r) for r in await pool.fetch("SELECT * FROM tokens")])

    r = await client.get("/api/tokens")
    assert r.status_code == 200
    items = r.json()["items"]
    assert [(t["name"], t["role"]) for t in items] == [("admin", "admin"), ("ci", "operator")]
    assert all(set(t) == {"id", "name", "role", "project", "agent", "created_at", "revoked_at"} for t in items)
    assert token not in r.text and row["hash"] not in r.text

    assert (await client.get("/api/jobs", headers=auth(token))).status_code == 200
    assert (await client.delete(f"/api/tokens/{made['id']}")).status_code == 204
    r = await client.get("/api/jobs", headers=auth(token))
    assert r.status_code == 401 and r.json()["detail"] == "unknown or revoked token"
    revoked = [t for t in (await client.get("/api/tokens")).json()["items"] if t["id"] == made["id"]]
    assert revoked[0]["revoked_at"] is not None
    assert (await client.delete(f"/api/tokens/{made['id']}")).status_code == 204  # again: no change
    assert (await client.delete("/api/tokens/nope")).status_code == 404

    for body, field in [
        ({"name": "x", "role": "root"}, "role"),
        ({"name": "x", "role": "agent", "agent": "a.b"}, "agent"),
        ({"name": "", "role": "viewer"}, "name"),
        ({"role": "viewer"}, "name"),
    ]:
        r = await client.post("/api/tokens", json=body)
        assert r.status_code == 400 and r.json()["field"] == field, (body, r.text)


async def test_operator_runs_jobs_but_changes_nothing_else(client: Client) -> None:
    repo = await make_repository(client)
    operator = auth((await _token(client, "ops", "operator"))["token"])
    r = await client.post("/api/jobs", json={"type": "check", "repository_id": repo["id"]}, headers=operator)
    assert r.status_code == 201, r.text
    assert r.json()["requested_by"] == "ops"
    job_id = r.json()["id"]
    for path in ("/api/jobs", f"/api/jobs/{job_id}", "/api/queue", "/api/settings", "/api/schedules",
                 "/api/notifications", "/api/calendar", "/api/repositories"):  # fmt: skip
        assert (await client.get(path, headers=operator)).status_code == 200, path
    assert (await client.post(f"/api/jobs/{job_id}/cancel", headers=operator)).status_code == 202
    assert (await client.post(f"/api/jobs/{job_id}/retry", headers=operator)).status_code == 201

    for method, path, body in [
        ("PUT", "/api/settings", {"max_concurrent_jobs": 2}),
        ("POST", "/api/repositories", {"name": "r2", "location": "/x", "agent": "local"}),
        ("POST", "/api/schedules", {"name": "s", "cron": "0 3 * * *", "job": {"type": "ping", "agent": "a"}}),
        ("POST", "/api/tokens", {"name": "t", "role": "admin"}),
        ("GET", "/api/tokens", None),
        ("DELETE", f"/api/jobs/{job_id}", None),
    ]:
        r = await client.request(method, path, json=body, headers=operator)
        assert r.status_code == 403, (method, path, r.text)
        assert "operator" in r.json()["detail"]


async def test_viewer_only_reads(client: Client) -> None:
    repo = await make_repository(client)
    job_id = (await client.post("/api/jobs", json={"type": "check", "repository_id": repo["id"]})).json()["id"]
    viewer = auth((await _token(client, "wall screen", "viewer"))["token"])
    for path in ("/api/jobs", f"/api/jobs/{job_id}", "/api/queue", "/api/schedules", "/api/plans"):
        assert (await client.get(path, headers=viewer)).status_code == 200, path
    for method, path, body in [
        ("POST", "/api/jobs", {"type": "check", "repository_id": repo["id"]}),
        ("POST", f"/api/jobs/{job_id}/cancel", None),
        ("POST", f"/api/jobs/{job_id}/retry", None),
        ("PUT", "/api/settings", {"max_concurrent_jobs": 2}),
        ("POST", "/api/notifications", {"name": "n", "url": "json://127.0.0.1:9/x"}),
    ]:
        r = await client.request(method, path, json=body, headers=viewer)
        assert r.status_code == 403, (method, path, r.text)
    assert (await client.get(f"/api/jobs/{job_id}/secret", headers=viewer)).status_code == 403


async def test_an_agent_token_serves_only_its_own_agent(
    client: Client, js: JetStreamContext, pool: asyncpg.Pool
) -> None:
    made = await _token(client, "web-1 executor", "agent", agent="web-1")
    assert made["role"] == "agent" and made["agent"] == "web-1"
    web1 = auth(made["token"])
    mine = await make_repository(client, "on-web-1", agent="web-1")
    theirs = await make_repository(client, "on-web-2", agent="web-2")
    own = (await client.post("/api/jobs", json={"type": "check", "repository_id": mine["id"]})).json()["id"]
    other = (await client.post("/api/jobs", json={"type": "check", "repository_id": theirs["id"]})).json()["id"]
    await advance(js, pool, own, JobSent(job_id=own, data=SentData(agent="web-1")))
    await advance(js, pool, other, JobSent(job_id=other, data=SentData(agent="web-2")))

    r = await client.get(f"/api/jobs/{own}/secret", headers=web1)
    assert r.status_code == 200 and r.json() == {"passphrase": PASSPHRASE}
    r = await client.get(f"/api/jobs/{other}/secret", headers=web1)
    assert r.status_code == 404 and PASSPHRASE not in r.text  # another agent's job, as if absent
    assert (await client.get("/api/jobs/nope/secret", headers=web1)).status_code == 404
    for method, path in [("GET", "/api/jobs"), ("GET", f"/api/jobs/{own}"), ("POST", "/api/jobs"),
                         ("GET", "/api/tokens"), ("POST", "/api/agents/web-9/token")]:  # fmt: skip
        assert (await client.request(method, path, headers=web1)).status_code == 403, (method, path)
    me = (await client.get("/api/tokens/self", headers=web1)).json()
    assert me["id"] == made["id"] and me["agent"] == "web-1" and "token" not in me


async def test_an_executor_enrols_once_with_a_join_token(client: Client) -> None:
    join = auth((await _token(client, "fleet", "join"))["token"])
    assert (await client.get("/api/jobs", headers=join)).status_code == 403
    assert (await client.get("/api/tokens/self", headers=join)).json()["role"] == "join"

    r = await client.post("/api/agents/db-1/token", headers=join)
    assert r.status_code == 201, r.text
    enrolled = r.json()
    assert enrolled["role"] == "agent" and enrolled["agent"] == "db-1" and enrolled["token"].startswith("bf_")
    me = await client.get("/api/tokens/self", headers=auth(enrolled["token"]))
    assert me.json()["agent"] == "db-1"

    # A second enrolment (a stolen join token, a second machine with the same name) is refused...
    again = await client.post("/api/agents/db-1/token", headers=join)
    assert again.status_code == 409 and "revoke" in again.json()["detail"]
    # ...until the old token is revoked.
    assert (await client.delete(f"/api/tokens/{enrolled['id']}")).status_code == 204
    assert (await client.post("/api/agents/db-1/token", headers=join)).status_code == 201
    bad = await client.post("/api/agents/db.1/token", headers=join)
    assert bad.status_code == 422 and bad.json()["field"] == "agent"


async def test_only_agent_tokens_name_an_agent(client: Client) -> None:
    r = await client.post("/api/tokens", json={"name": "x", "role": "agent"})
    assert r.status_code == 422 and r.json()["field"] == "agent"
    r = await client.post("/api/tokens", json={"name": "x", "role": "viewer", "agent": "web-1"})
    assert r.status_code == 422 and r.json()["field"] == "agent"


async def _live_admins(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM tokens WHERE role = 'admin' AND revoked_at IS NULL"))


async def test_the_last_admin_token_cannot_be_revoked(client: Client, pool: asyncpg.Pool) -> None:
    me = (await client.get("/api/tokens/self")).json()  # the bootstrap admin token, the only admin
    r = await client.delete(f"/api/tokens/{me['id']}")
    assert r.status_code == 409 and "force=true" in r.json()["detail"], r.text
    r = await client.delete(f"/api/tokens/{me['id']}", params={"force": "true"})
    assert r.status_code == 409, r.text
    assert "last admin token" in r.json()["detail"] and "Make another admin token first" in r.json()["detail"]
    assert (await client.get("/api/tokens/self")).status_code == 200

    # Admin tokens see every project, whichever they name: one of another project is an admin too.
    other = await _token(client, "second admin", "admin", project="elsewhere")
    assert (await client.delete(f"/api/tokens/{me['id']}", params={"force": "true"})).status_code == 204
    assert (await client.get("/api/tokens/self")).status_code == 401
    second = auth(other["token"])
    r = await client.delete(f"/api/tokens/{other['id']}", params={"force": "true"}, headers=second)
    assert r.status_code == 409 and "last admin token" in r.json()["detail"]
    # Revoked tokens and other roles do not count: still one admin.
    viewer = await _token(client, "viewer", "viewer", headers=second)
    assert (await client.delete(f"/api/tokens/{viewer['id']}", headers=second)).status_code == 204
    assert (await client.delete(f"/api/tokens/{me['id']}", headers=second)).status_code == 204  # revoked already
    assert await _live_admins(pool) == 1


async def test_an_admin_revokes_itself_only_with_force(client: Client) -> None:
    made = await _token(client, "leaving", "admin")
    leaving = auth(made["token"])
    r = await client.delete(f"/api/tokens/{made['id']}", headers=leaving)
    assert r.status_code == 409 and "pass force=true" in r.json()["detail"]
    assert (await client.get("/api/tokens/self", headers=leaving)).status_code == 200
    assert (await client.delete(f"/api/tokens/{made['id']}?force=true", headers=leaving)).status_code == 204
    assert (await client.get("/api/tokens/self", headers=leaving)).status_code == 401
    # Another admin needs no force to revoke a token, and none to revoke an agent's.
    agent = await _token(client, "web-1 executor", "agent", agent="web-1")
    assert (await client.delete(f"/api/tokens/{agent['id']}")).status_code == 204


async def test_two_admins_revoking_each_other_at_once_leave_one(client: Client, pool: asyncpg.Pool) -> None:
    me = (await client.get("/api/tokens/self")).json()
    a, b = await _token(client, "a", "admin"), await _token(client, "b", "admin")
    assert (await client.delete(f"/api/tokens/{me['id']}", params={"force": "true"})).status_code == 204
    answers = await asyncio.gather(
        client.delete(f"/api/tokens/{b['id']}", headers=auth(a["token"])),
        client.delete(f"/api/tokens/{a['id']}", headers=auth(b["token"])),
    )
    # The second waits for the first, then finds one admin left (409), or its own token revoked (401).
    assert sorted(r.status_code for r in answers) in ([204, 401], [204, 409]), [r.text for r in answers]
    assert await _live_admins(pool) == 1

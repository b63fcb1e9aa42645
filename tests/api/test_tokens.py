"""Tokens: made by an admin and shown once, stored hashed; roles decide what a token may do."""

from __future__ import annotations

from typing import Any

import asyncpg

from shared.tokens import hash_token
from tests.api.conftest import Client, auth, make_repository


async def _token(client: Client, name: str, role: str, **fields: Any) -> dict[str, Any]:
    r = await client.post("/api/tokens", json={"name": name, "role": role, **fields})
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
    assert all(set(t) == {"id", "name", "role", "project", "created_at", "revoked_at"} for t in items)
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
        ({"name": "x", "role": "agent"}, "role"),
        ({"name": "x", "role": "root"}, "role"),
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

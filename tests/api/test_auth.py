"""Who may call what: bearer tokens, stored hashed; agents may only read secrets."""

from __future__ import annotations

import asyncpg

from shared.tokens import hash_token
from shared.version import VERSION
from tests.api.conftest import ADMIN_TOKEN, Client, auth


async def test_health_needs_no_token(client: Client) -> None:
    r = await client.get("/api/health", headers={"Authorization": ""})
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "version": VERSION}


async def test_missing_token_is_401_with_a_clear_detail(client: Client) -> None:
    r = await client.get("/api/jobs", headers={"Authorization": ""})
    assert r.status_code == 401
    assert "Authorization: Bearer" in r.json()["detail"]
    assert r.headers["www-authenticate"] == "Bearer"


async def test_unknown_token_is_401(client: Client) -> None:
    r = await client.get("/api/repositories", headers=auth("not-a-token"))
    assert r.status_code == 401
    assert r.json()["detail"] == "unknown or revoked token"


async def test_admin_token_is_stored_hashed_once(client: Client, pool: asyncpg.Pool) -> None:
    rows = await pool.fetch("SELECT name, role, hash FROM tokens")
    assert [(r["name"], r["role"], r["hash"]) for r in rows] == [("admin", "admin", hash_token(ADMIN_TOKEN))]
    assert ADMIN_TOKEN not in str([dict(r) for r in rows])


async def test_revoked_token_is_refused(client: Client, pool: asyncpg.Pool) -> None:
    await pool.execute("UPDATE tokens SET revoked_at = now()")
    assert (await client.get("/api/queue")).status_code == 401


async def test_agent_token_may_only_read_secrets(client: Client, agent_token: str) -> None:
    for method, path in [
        ("GET", "/api/jobs"),
        ("GET", "/api/repositories"),
        ("POST", "/api/jobs"),
        ("GET", "/api/settings"),
        ("GET", "/api/queue"),
    ]:
        r = await client.request(method, path, headers=auth(agent_token), json={"type": "ping", "agent": "x"})
        assert r.status_code == 403, (method, path, r.text)
        assert "agent" in r.json()["detail"]
    # The secret endpoint lets it through to the job lookup (no such job here).
    r = await client.get("/api/jobs/01unknownjob/secret", headers=auth(agent_token))
    assert r.status_code == 404


async def test_openapi_schema_is_served(client: Client) -> None:
    r = await client.get("/schema/openapi.json", headers={"Authorization": ""})
    assert r.status_code == 200
    assert "/api/jobs" in r.json()["paths"]

"""API tokens: random, shown once, stored only as a hash."""

from __future__ import annotations

import hashlib
import secrets

import asyncpg

from shared import ids


def new_token() -> str:
    return "bf_" + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def ensure_token(
    conn: asyncpg.Connection,
    name: str,
    role: str,
    token: str,
    project: str = "default",
    agent: str | None = None,
) -> None:
    """Make `token` valid with `role` (bound to `agent` for role agent); idempotent: stored once."""
    await conn.execute(
        "INSERT INTO tokens (id, name, role, project, hash, agent) VALUES ($1, $2, $3, $4, $5, $6)"
        " ON CONFLICT (hash) DO UPDATE SET role = EXCLUDED.role, agent = EXCLUDED.agent, revoked_at = NULL",
        ids.new_id(),
        name,
        role,
        project,
        hash_token(token),
        agent,
    )

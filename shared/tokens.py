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


async def ensure_token(conn: asyncpg.Connection, name: str, role: str, token: str, project: str = "default") -> None:
    """Make `token` valid with `role` (idempotent: the same token is stored once)."""
    await conn.execute(
        "INSERT INTO tokens (id, name, role, project, hash) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (hash) DO UPDATE SET role = EXCLUDED.role, revoked_at = NULL",
        ids.new_id(),
        name,
        role,
        project,
        hash_token(token),
    )

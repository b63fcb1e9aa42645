"""API tokens (admin only): a new token is shown once; only its hash is stored."""

from __future__ import annotations

import logging

import asyncpg
from litestar import Controller, delete, get, post

from services.api import queries
from services.api.auth import ADMIN, Principal
from services.api.controllers import safe_id
from services.api.errors import NotFound
from services.api.runtime import Runtime
from services.api.schemas import Token, TokenCreate, TokenCreated, TokenList
from shared import ids, tokens

log = logging.getLogger(__name__)


def _token(row: asyncpg.Record) -> Token:
    return Token(**dict(row))


class TokenController(Controller):
    path = "/api/tokens"
    tags = ("tokens",)

    @post(opt={"permission": ADMIN})
    async def create(self, rt: Runtime, principal: Principal, data: TokenCreate) -> TokenCreated:
        """The answer's `token` is the only time it is shown: keep it."""
        plain = tokens.new_token()
        row = await queries.insert_token(
            rt.pool,
            token_id=ids.new_id(),
            name=data.name,
            role=data.role,
            project=data.project,
            digest=tokens.hash_token(plain),
        )
        log.info("token created", extra={"action": "token.create", "token_id": row["id"], "by": principal.name})
        return TokenCreated(**dict(row), token=plain)

    @get(opt={"permission": ADMIN}, cache=False)
    async def list_all(self, rt: Runtime) -> TokenList:
        """Every token, revoked ones included; never a token or its hash."""
        return TokenList(items=[_token(r) for r in await queries.tokens(rt.pool)])

    @delete("/{token_id:str}", opt={"permission": ADMIN})
    async def revoke(self, rt: Runtime, principal: Principal, token_id: str) -> None:
        """Revoke a token: from now on it gets 401. Revoking a revoked one changes nothing."""
        if not await queries.revoke_token(rt.pool, safe_id(token_id, "token")):
            raise NotFound(f"no token {token_id}")
        log.info("token revoked", extra={"action": "token.revoke", "token_id": token_id, "by": principal.name})

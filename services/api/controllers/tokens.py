"""API tokens: admins make and revoke them; a new token is shown once; only its hash is stored.

Executors enrol with a join token: `POST /api/agents/{agent}/token` answers a token
bound to that agent (once: while one is live, enrolling again is refused), which the
executor keeps in its data dir and uses from then on.
"""

from __future__ import annotations

import logging

import asyncpg
import msgspec
from litestar import Controller, delete, get, post

from services.api import queries
from services.api.auth import ADMIN, JOIN, SELF, Principal
from services.api.controllers import safe_id
from services.api.errors import Conflict, Invalid, NotFound
from services.api.runtime import Runtime
from services.api.schemas import AgentName, Token, TokenCreate, TokenCreated, TokenList
from shared import ids, tokens

log = logging.getLogger(__name__)


def _token(row: asyncpg.Record) -> Token:
    return Token(**dict(row))


class TokenController(Controller):
    path = "/api/tokens"
    tags = ("tokens",)

    @post(opt={"permission": ADMIN})
    async def create(self, rt: Runtime, principal: Principal, data: TokenCreate) -> TokenCreated:
        """The answer's `token` is the only time it is shown: keep it.

        An `agent` token needs `agent` (the one agent whose jobs' secrets it may fetch);
        no other role takes one.
        """
        if data.role == "agent" and data.agent is None:
            raise Invalid("agent is required for an agent token: the agent it serves", "agent")
        if data.role != "agent" and data.agent is not None:
            raise Invalid(f"agent is only for agent tokens, not {data.role}", "agent")
        plain = tokens.new_token()
        row = await queries.insert_token(
            rt.pool,
            token_id=ids.new_id(),
            name=data.name,
            role=data.role,
            project=data.project,
            digest=tokens.hash_token(plain),
            agent=data.agent,
        )
        extra = {"action": "token.create", "token_id": row["id"], "role": data.role, "by": principal.name}
        log.info("token created", extra=extra)
        return TokenCreated(**dict(row), token=plain)

    @get(opt={"permission": ADMIN}, cache=False)
    async def list_all(self, rt: Runtime) -> TokenList:
        """Every token, revoked ones included; never a token or its hash."""
        return TokenList(items=[_token(r) for r in await queries.tokens(rt.pool)])

    @get("/self", opt={"permission": SELF}, cache=False)
    async def whoami(self, rt: Runtime, principal: Principal) -> Token:
        """The token this request was made with (its role, project and agent)."""
        row = await queries.token(rt.pool, principal.id)
        if row is None:  # revoked between the lookup and now
            raise NotFound("this token no longer exists")
        return _token(row)

    @delete("/{token_id:str}", opt={"permission": ADMIN, "conflict": True})
    async def revoke(self, rt: Runtime, principal: Principal, token_id: str, force: bool = False) -> None:
        """Revoke a token: from now on it gets 401. Revoking a revoked one changes nothing.

        409 for the token of the request itself unless `force=true`, and for the last
        admin token (not revoked) always: make another admin token first.
        """
        if safe_id(token_id, "token") == principal.id and not force:
            raise Conflict(
                "this is the token this request is made with: revoking it locks its holder out. "
                "To revoke it anyway, pass force=true (DELETE /api/tokens/{id}?force=true)."
            )
        outcome = await queries.revoke_token(rt.pool, token_id)
        rt.tokens.forget(token_id)  # at once here; other api replicas within the cache's TTL
        if outcome == "no such token":
            raise NotFound(f"no token {token_id}")
        if outcome == "last admin":
            raise Conflict(
                f"token {token_id} is the last admin token: without one nobody could make tokens or change settings "
                'again. Make another admin token first (POST /api/tokens {"role": "admin"}), then revoke this one.'
            )
        log.info("token revoked", extra={"action": "token.revoke", "token_id": token_id, "by": principal.name})


class EnrolController(Controller):
    path = "/api/agents"
    tags = ("agents",)

    @post("/{agent:str}/token", opt={"permission": JOIN, "conflict": True})
    async def enrol(self, rt: Runtime, principal: Principal, agent: str) -> TokenCreated:
        """Enrol an executor: a token bound to `agent`, shown once (join tokens and admins).

        While `agent` has a live token, this answers 409: revoke that one first
        (DELETE /api/tokens/{id}), so a join token cannot take over an enrolled agent.
        """
        name = _agent_name(agent)
        plain = tokens.new_token()
        row = await queries.enrol_agent(rt.pool, token_id=ids.new_id(), agent=name, digest=tokens.hash_token(plain))
        if row is None:
            raise Conflict(
                f"agent {name!r} is enrolled already: its executor keeps its token in its data dir. "
                "To enrol it again, revoke the old token (GET /api/tokens, DELETE /api/tokens/{id})."
            )
        extra = {"action": "agent.enrol", "agent": name, "token_id": row["id"], "by": principal.name}
        log.info("agent enrolled", extra=extra)
        return TokenCreated(**dict(row), token=plain)


def _agent_name(agent: str) -> str:
    try:
        return msgspec.convert(agent, AgentName)
    except msgspec.ValidationError:
        raise Invalid("agent: letters, digits, '-' and '_' only (1 to 100)", "agent") from None

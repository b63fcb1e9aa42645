"""Bearer tokens: who is asking (authentication) and what their role may do (authorization).

Tokens are stored as sha256 hex digests; the plain token is never stored or logged.
Each handler names the permission it needs in `opt={"permission": ...}`; `may` says
whether a role has it. Adding a role is one line in ROLE_PERMISSIONS.

Projects: admins (and executors' agent tokens) see every project; operators and
viewers see only their token's project. `project_scope` is the one place that says
which project a principal is limited to; `services/api/scope.py` applies it.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import asyncpg
import msgspec
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.exceptions import (
    NotAuthorizedException,
    PermissionDeniedException,
    TooManyRequestsException,
    WebSocketException,
)
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.types import ASGIApp

from services.api import queries
from services.api.limits.throttle import AuthThrottle
from services.api.runtime import Runtime
from shared import tokens
from shared.tokens import hash_token

# Permissions a handler may ask for.
READ = "read"  # see jobs, configuration, queue, agents, schedules, notification targets
RUN = "run"  # submit, cancel and retry jobs
WRITE = "write"  # change repositories, plans, schedules, notification targets; delete job history
ADMIN = "admin"  # system settings, tokens
SECRET = "secret"  # a running job's passphrase (executors; an agent token: only its own agent's jobs)
JOIN = "join"  # enrol an executor: get a token bound to its agent (join tokens)
SELF = "self"  # see one's own token (every role)

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": frozenset({READ, RUN, WRITE, ADMIN, SECRET, JOIN, SELF}),
    "operator": frozenset({READ, RUN, SELF}),
    "viewer": frozenset({READ, SELF}),
    "agent": frozenset({SECRET, SELF}),
    "join": frozenset({JOIN, SELF}),
}

# Roles limited to the project of their token.
SCOPED_ROLES = frozenset({"operator", "viewer"})

WWW_AUTHENTICATE = {"WWW-Authenticate": "Bearer"}
# Served without a token: the OpenAPI schema. GET /api/health and the pages (whose data
# calls carry the token) opt out by their handlers' opt.
PUBLIC_PATHS = ("/schema",)


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """The holder of a valid token."""

    id: str
    name: str
    role: str
    project: str = "default"
    agent: str | None = None
    """The one agent an agent token serves."""


def may(role: str, permission: str) -> bool:
    """Whether `role` grants `permission`."""
    return permission in ROLE_PERMISSIONS.get(role, frozenset())


def project_scope(principal: Principal) -> str | None:
    """The one project `principal` is limited to, or None for every project.

    List paths filter on it, single items of another project are answered 404 (as if
    absent), and websockets forward nothing of other projects.
    """
    return principal.project if principal.role in SCOPED_ROLES else None


def _unauthorized(connection: ASGIConnection[Any, Any, Any, Any], detail: str) -> Exception:
    # A websocket is refused with a close code: 4000 + the HTTP status.
    if connection.scope["type"] == ScopeType.WEBSOCKET:
        return WebSocketException(detail=detail, code=4401)
    return NotAuthorizedException(detail, headers=WWW_AUTHENTICATE)


def _forbidden(connection: ASGIConnection[Any, Any, Any, Any], detail: str) -> Exception:
    if connection.scope["type"] == ScopeType.WEBSOCKET:
        return WebSocketException(detail=detail, code=4403)
    return PermissionDeniedException(detail)


def _throttled(connection: ASGIConnection[Any, Any, Any, Any], wait_s: int) -> Exception:
    detail = f"too many unknown or revoked tokens from this address: retry after {wait_s} seconds"
    if connection.scope["type"] == ScopeType.WEBSOCKET:
        return WebSocketException(detail=detail, code=4429)
    return TooManyRequestsException(detail, headers={"Retry-After": str(wait_s)})


def _bearer(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    header = connection.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if connection.scope["type"] == ScopeType.WEBSOCKET:
        return connection.query_params.get("token") or None
    return None


class TokenAuthMiddleware(AbstractAuthenticationMiddleware):
    """Sets `request.user` to the token's Principal, or answers 401 (429 to an address that guesses)."""

    def __init__(self, app: ASGIApp, throttle: AuthThrottle, **options: Any) -> None:
        super().__init__(app, **options)
        self.throttle = throttle  # one for the app: Litestar makes this middleware once per route

    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        token = _bearer(connection)
        if token is None:
            raise _unauthorized(connection, "authentication required: send the header 'Authorization: Bearer <token>'")
        address = connection.client.host if connection.client else ""
        digest = hash_token(token)
        # Before the lookup: a refused guess costs a dictionary read, not a query.
        if wait_s := self.throttle.wait_s(address, digest):
            raise _throttled(connection, wait_s)
        rt: Runtime = connection.app.state.runtime
        row = await rt.tokens.row(digest, partial(queries.token_by_hash, rt.pool))
        if row is None:
            self.throttle.failed(address, digest)
            raise _unauthorized(connection, "unknown or revoked token")
        self.throttle.succeeded(digest)
        principal = Principal(
            id=row["id"], name=row["name"], role=row["role"], project=row["project"], agent=row["agent"]
        )
        return AuthenticationResult(user=principal, auth=None)


async def authorize(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Guard: the caller's role must grant the handler's permission (admin when unnamed).

    Async, so it runs on the event loop rather than in a worker thread for every request.
    OPTIONS passes without a token, as a browser's preflight must: its answer (the methods
    a path allows) says nothing a token protects, and the middleware does not look at it.
    """
    if handler.opt.get("exclude_from_auth") or connection.url.path.startswith(PUBLIC_PATHS):
        return
    if connection.scope.get("method") == "OPTIONS":
        return
    permission = str(handler.opt.get("permission", ADMIN))
    principal = connection.scope.get("user")
    if not isinstance(principal, Principal):
        raise _unauthorized(connection, "authentication required")
    if not may(principal.role, permission):
        raise _forbidden(
            connection,
            f"token {principal.name!r} has role {principal.role!r}, which may not do this ({permission})",
        )


def principal_of(request: Request[Any, Any, Any]) -> Principal:
    """Dependency: who is asking."""
    return principal_of_connection(request)


def principal_of_connection(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """Who is asking, on a request or a websocket."""
    user = connection.user
    if not isinstance(user, Principal):
        raise NotAuthorizedException("authentication required", headers=WWW_AUTHENTICATE)
    return user


async def ensure_admin_token(pool: asyncpg.Pool, token: str) -> None:
    """Store the configured admin token (hashed) as the `admin` token; idempotent."""
    async with queries.connection(pool) as conn:
        await tokens.ensure_token(conn, "admin", "admin", token)


async def ensure_join_token(pool: asyncpg.Pool, token: str) -> None:
    """Store the configured join token (hashed), with which executors enrol; idempotent."""
    async with queries.connection(pool) as conn:
        await tokens.ensure_token(conn, "join", "join", token)

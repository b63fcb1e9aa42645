"""The api's errors and how every error becomes a JSON answer: `{"detail", "field"?}`.

Bad input is 400/422 and names the field, a missing thing is 404, a refusal by the
system's rules is 409. Nothing a client sends can make a 500, and no answer carries
a secret: messages are built from field names and ids, never from submitted values.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import nats.errors
import nats.js.errors
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap

from shared import db
from shared.exceptions import BorgflowError
from shared.submit import InvalidRequest, Rejected, readable_problem

log = logging.getLogger(__name__)


class ApiError(BorgflowError):
    """An error with the status and message a client gets."""

    status = 400

    def __init__(self, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class BadRequest(ApiError):
    status = 400


class Invalid(ApiError):
    status = 422


class NotFound(ApiError):
    status = 404


class Forbidden(ApiError):
    status = 403


class Conflict(ApiError):
    status = 409


class Unavailable(ApiError):
    status = 503


def _answer(
    status: int, detail: str, field: str | None = None, headers: dict[str, str] | None = None
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {"detail": detail}
    if field:
        body["field"] = field
    return Response(body, status_code=status, headers=headers)


_BACKTICK = re.compile(r"`([^`]+)`")


def _field_of(item: dict[str, Any]) -> str:
    """The field a Litestar validation item names; `data` means the message says which."""
    key = str(item.get("key") or "")
    message = str(item.get("message") or "")
    at_body = key in ("", "data")
    named = _BACKTICK.findall(message)
    if ("missing required field" in message or "unknown field" in message) and named:
        return ("" if at_body else key.split("[")[0] + ".") + str(named[-1])
    return "body" if at_body else key.split("[")[0]


def _validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, Any]]:
    items = exc.extra if isinstance(exc.extra, list) else []
    if not items:
        return _answer(400, str(exc.detail), "body")
    first = items[0] if isinstance(items[0], dict) else {}
    field = _field_of(first)
    message = readable_problem(field, str(first.get("message") or "invalid value"))
    if field == "body" and message == "'data'":
        return _answer(400, "a JSON body is required", "body")
    return _answer(400, f"{field}: {message}", field)


def _http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    if exc.status_code >= 500:
        return _internal(request, exc)
    detail = str(exc.detail)
    if exc.status_code == 400 and detail.startswith("JSON is malformed"):
        return _answer(400, f"the body is not valid JSON ({detail.removeprefix('JSON is malformed: ')})", "body")
    return _answer(exc.status_code, detail, headers=dict(exc.headers or {}))


def _api(_: Request[Any, Any, Any], exc: ApiError) -> Response[dict[str, Any]]:
    return _answer(exc.status, exc.detail, exc.field)


def _invalid_request(_: Request[Any, Any, Any], exc: InvalidRequest) -> Response[dict[str, Any]]:
    return _answer(exc.status, exc.detail, exc.field)


def _rejected(_: Request[Any, Any, Any], exc: Rejected) -> Response[dict[str, Any]]:
    return _answer(409, exc.detail)


def _internal(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    if isinstance(exc, db.TRANSIENT) or _nats_away(exc):
        # Not our bug and not the client's: a store is restarting. Say so, and when to retry.
        log.warning("store unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return _answer(
            503, "a backing store (Postgres or NATS) is unavailable; retry shortly", None, {"Retry-After": "2"}
        )
    # The type and place only: an exception's text may quote data it was handed.
    log.error(
        "unhandled %s on %s %s",
        type(exc).__name__,
        request.method,
        request.url.path,
        exc_info=exc,
        extra={"action": "api.error"},
    )
    return _answer(500, "internal error: the api could not answer; see its log")


def _nats_away(exc: BaseException) -> bool:
    """NATS down, reconnecting, or (on a cluster) electing a stream's leader."""
    return isinstance(
        exc,
        nats.errors.ConnectionClosedError
        | nats.errors.NoRespondersError
        | nats.errors.TimeoutError
        | nats.errors.ConnectionReconnectingError
        | nats.errors.StaleConnectionError
        | nats.js.errors.ServiceUnavailableError
        | nats.js.errors.NoStreamResponseError
        | TimeoutError,
    )


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    ValidationException: _validation,
    HTTPException: _http,
    ApiError: _api,
    InvalidRequest: _invalid_request,
    Rejected: _rejected,
    Exception: _internal,
}

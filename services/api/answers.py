"""What every operation can answer besides success, written into the OpenAPI document.

Litestar documents a handler's success answer and, for its own validation errors, a
body with `status_code` that borgflow never sends. Every error borgflow sends is
`{"detail", "field"?}` (services/api/errors.py), so each operation gets that body under
each status it can answer, derived from what the operation is:

- an operation that needs a token: 401 (none or unknown), 403 (role or project), 429
  (too many failed authentications from the client);
- one with path parameters: 404 (no such thing), 400 and 422 (a malformed id or name);
- one that takes a body or query parameters: 400 (malformed, a field's type) and 422
  (a field's value breaks a rule); a body: 413 (too large);
- one that may be refused by the system's rules now: 409, declared by the handler with
  `opt={"conflict": True}`;
- everything under /api: 503 (Postgres or NATS unavailable for a moment).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import msgspec
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Link, OpenAPI, OpenAPIResponse, Reference
from litestar.routes import BaseRoute, HTTPRoute


class ErrorBody(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Every error answer: what went wrong in words, and the request field it is about."""

    detail: str
    field: str | None = None


# Parameters the api provides itself (dependencies), not the client.
_NOT_FROM_REQUEST = {"rt", "principal", "request", "socket"}

_SAYS = {
    400: "Malformed request: a field of the wrong type, a bad id or query parameter (`field` names it)",
    401: "No token, or one that does not exist or was revoked",
    403: "The token's role or project may not do this",
    404: "No such thing (or one of a project the token does not see)",
    409: "Refused by the system's rules in the current state (`detail` says which and what to do)",
    413: "The body is larger than the api accepts",
    422: "A field's value breaks a rule (`field` names it)",
    429: "Too many failed authentications from this client: retry after `Retry-After` seconds",
    503: "A backing store (Postgres or NATS) is unavailable for a moment: retry after `Retry-After` seconds",
}


def _codes(handler: HTTPRouteHandler, path: str, public: bool) -> set[int]:
    codes: set[int] = set()
    if path.startswith("/api"):
        codes.add(503)
    if not public:
        codes |= {401, 403, 429}
    params = set(handler.parsed_fn_signature.parameters) - _NOT_FROM_REQUEST
    in_path = set(re.findall(r"{(\w+)", path))
    if in_path:
        # 400: Litestar checks a path parameter's type; 422: a name with characters it may not have
        codes |= {400, 404, 422}
    if "data" in params:
        codes |= {400, 413, 422}
    if params - in_path - {"data"}:
        codes |= {400, 422}
    if handler.opt.get("conflict"):
        codes.add(409)
    return codes


def document(routes: Iterable[BaseRoute], public_paths: tuple[str, ...]) -> None:
    """Give every HTTP handler of `routes` its error answers (before /schema is first built)."""
    for route in routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            public = bool(handler.opt.get("exclude_from_auth")) or route.path.startswith(public_paths)
            documented = {
                code: ResponseSpec(data_container=ErrorBody, description=_SAYS[code], generate_examples=False)
                for code in sorted(_codes(handler, route.path, public))
            }
            handler.responses = {**documented, **(handler.responses or {})}


def link(schema: OpenAPI) -> None:
    """Link each POST that makes a thing to the operations on that thing by its id.

    `POST /api/plans` answers a plan with `id`; `GET /api/plans/{plan_id}` and the other
    operations under it take that id: a link says so, for clients and for stateful
    testers that chain requests the way a person would (make, read, change, delete).
    """
    paths = schema.paths or {}
    for path, item in paths.items():
        made = item.post.responses.get("201") if item.post and item.post.responses else None
        if not isinstance(made, OpenAPIResponse):
            continue
        links: dict[str, Link | Reference] = {}
        for other_path, other in paths.items():
            found = re.fullmatch(re.escape(path) + r"/\{(\w+)\}(/[\w/]*)?", other_path)
            if not found:
                continue
            for method in ("get", "put", "post", "delete"):
                op = getattr(other, method)
                if op is None or not op.operation_id:
                    continue
                links[op.operation_id] = Link(
                    operation_id=op.operation_id, parameters={found.group(1): "$response.body#/id"}
                )
        if links:
            made.links = links

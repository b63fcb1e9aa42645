"""Refuse NUL characters in query parameters and JSON bodies before any handler runs.

Postgres text cannot hold U+0000: such a value would fail deep inside a query
(a 500). Checked once here for every request, the answer is a 400 naming the field.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request

from services.api.errors import BadRequest

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _nul_at(value: Any, path: str) -> str | None:
    """The dotted path of the first string (or key) holding a NUL, else None."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                return path or "body"
            found = _nul_at(item, here)
            if found is not None:
                return found
    if isinstance(value, list):
        for item in value:
            found = _nul_at(item, path)
            if found is not None:
                return found
    return None


def _refusal(field: str) -> BadRequest:
    return BadRequest(f"{field}: text must not contain NUL characters (\\u0000)", field)


async def refuse_nul(request: Request[Any, Any, Any]) -> None:
    """Litestar before_request hook: 400 naming the first field that holds a NUL."""
    for key, value in request.query_params.multi_items():
        if "\x00" in key or "\x00" in value:
            raise _refusal(key.replace("\x00", "") or "query")
    if request.method not in _BODY_METHODS or "json" not in (request.content_type[0] or ""):
        return
    raw = await request.body()  # cached: the handler reads the same bytes
    if b"\\u0000" not in raw:
        return
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return  # malformed JSON: the handler answers that
    found = _nul_at(body, "")
    if found is not None:
        raise _refusal(found.replace("\x00", "") or "body")

"""Request bodies beyond BORGFLOW_MAX_BODY_BYTES: 413, with a detail that names the limit.

Litestar enforces the limit (`request_max_body_size`): from Content-Length before reading
anything, else while the body streams in, so a large body is never held in memory.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException

from services.api.errors import EXCEPTION_HANDLERS


def too_large(request: Request[Any, Any, Any], _: HTTPException) -> Response[Any]:
    """Handler of status 413: answered as every other error is, saying what the limit is."""
    limit = request.route_handler.resolve_request_max_body_size()
    detail = f"the request body is larger than this api takes ({limit} bytes, BORGFLOW_MAX_BODY_BYTES)"
    return EXCEPTION_HANDLERS[HTTPException](request, HTTPException(status_code=413, detail=detail))

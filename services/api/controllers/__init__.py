"""One module per area of the api."""

from __future__ import annotations

import re

from services.api.errors import NotFound

# Ids go into NATS subjects: refuse anything that could act as a token separator or wildcard.
_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def safe_id(value: str, what: str) -> str:
    """A path id, or 404 when it cannot be one of ours."""
    if not _SAFE_ID.match(value):
        raise NotFound(f"no {what} {value!r}")
    return value

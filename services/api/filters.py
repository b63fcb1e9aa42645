"""Query parameters of GET /api/jobs: times (`1h`, `7d` or ISO 8601), lists, the cursor."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime, timedelta

import msgspec

from services.api.errors import BadRequest
from shared.events import JOB_TYPES, JobStatus

_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
STATUSES: tuple[str, ...] = tuple(str(s) for s in JobStatus)
MAX_LIMIT = 500


def parse_time(value: str | None, field: str, now: datetime) -> datetime | None:
    """`30m`, `1h`, `24h`, `7d`, `2w` ago, or an ISO 8601 time (UTC when it has no zone)."""
    if value is None or value == "":
        return None
    text = value.strip()
    match = _RELATIVE.match(text)
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"{field}: {value!r} is neither ISO 8601 nor a duration like 1h, 24h, 7d", field) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def parse_list(value: str | None, field: str, allowed: tuple[str, ...]) -> list[str] | None:
    """A comma-separated list of known values (`status=queued,sent`)."""
    if not value:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    for item in items:
        if item not in allowed:
            raise BadRequest(f"{field}: unknown value {item!r}: one of {', '.join(allowed)}", field)
    return items or None


def parse_statuses(value: str | None) -> list[str] | None:
    return parse_list(value, "status", STATUSES)


def parse_types(value: str | None) -> list[str] | None:
    return parse_list(value, "type", JOB_TYPES)


def parse_limit(value: int) -> int:
    if value < 1:
        raise BadRequest("limit must be at least 1", "limit")
    return min(value, MAX_LIMIT)


class _Cursor(msgspec.Struct, array_like=True):
    created_at: datetime
    id: str


def encode_cursor(created_at: datetime, job_id: str) -> str:
    raw = msgspec.json.encode(_Cursor(created_at=created_at, id=job_id))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(value: str | None) -> tuple[datetime, str] | None:
    if not value:
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        cursor = msgspec.json.decode(raw, type=_Cursor)
    except (binascii.Error, ValueError, msgspec.MsgspecError):
        raise BadRequest("cursor is not one this api gave out (pass next_cursor as it is)", "cursor") from None
    return cursor.created_at, cursor.id

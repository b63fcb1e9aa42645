"""System settings (GET/PUT /api/settings): stored in Postgres, mirrored into the KV bucket.

The dispatcher and others watch the `borgflow_settings` KV key `system`, so a change
takes effect without a restart; stream limits (log retention, log size) are applied
to BORGFLOW_LOGS here.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import msgspec
from nats.js import JetStreamContext

from services.api import queries
from services.api.errors import Invalid
from shared import livesettings
from shared.config import SystemSettings
from shared.streams import ensure_streams
from shared.submit import field_of

log = logging.getLogger(__name__)

FIELDS: tuple[str, ...] = SystemSettings.__struct_fields__
AT_LEAST_ONE = (
    "max_concurrent_jobs",
    "agent_slots",
    "log_retention_days",
    "stall_timeout_s",
    "log_max_bytes",
)
NULLABLE_AT_LEAST_ONE = (
    "max_concurrent_manual_backups",
    "max_concurrent_scheduled_backups",
    "max_concurrent_scheduled_checks",
)


def decode(value: dict[str, Any] | None) -> SystemSettings:
    """Stored settings (defaults for what is absent)."""
    if value is None:
        return SystemSettings()
    known = {k: v for k, v in value.items() if k in FIELDS}
    try:
        return msgspec.convert(known, SystemSettings)
    except msgspec.ValidationError as e:
        log.error("stored system settings are invalid (%s); using defaults", e)
        return SystemSettings()


async def load(db: queries.Db) -> SystemSettings:
    return decode(await queries.system_settings(db))


def changed(current: SystemSettings, body: Any) -> SystemSettings:
    """`current` with the fields of a full or partial body, validated; Invalid names the field."""
    if not isinstance(body, dict):
        raise Invalid("the body must be a JSON object of settings", "body")
    for key in body:
        if key not in FIELDS:
            raise Invalid(f"unknown setting {key!r}: one of {', '.join(FIELDS)}", str(key))
    merged = msgspec.to_builtins(current) | body
    try:
        new = msgspec.convert(merged, SystemSettings)
    except msgspec.ValidationError as e:
        field = field_of(e)
        raise Invalid(f"{field}: {str(e).split(' - at ')[0]}", field) from e
    for name in AT_LEAST_ONE:
        if getattr(new, name) < 1:
            raise Invalid(f"{name} must be at least 1", name)
    for name in NULLABLE_AT_LEAST_ONE:
        value = getattr(new, name)
        if value is not None and value < 1:
            raise Invalid(f"{name} must be at least 1, or null for no separate limit", name)
    if new.sent_timeout_s <= 0:
        raise Invalid("sent_timeout_s must be a positive number of seconds", "sent_timeout_s")
    return new


async def publish(js: JetStreamContext, settings: SystemSettings, replicas: int = 1) -> None:
    """Apply stream limits (and replicas) and put the settings where every service watches them."""
    await ensure_streams(js, settings, replicas)
    await livesettings.put_settings(js, settings)


async def update(conn: asyncpg.Connection, js: JetStreamContext, body: Any, replicas: int = 1) -> SystemSettings:
    """Apply a (partial) body: validate, store, publish. The row commits only once NATS has it."""
    async with conn.transaction():
        # One change at a time, so two partial updates cannot lose each other's fields.
        await queries.lock_settings(conn)
        new = changed(await load(conn), body)
        await queries.put_system_settings(conn, msgspec.to_builtins(new))
        await publish(js, new, replicas)
    return new

"""System settings as every service sees them live: a KV entry the api writes on change."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import msgspec
from nats.js import JetStreamContext

from shared.config import SystemSettings
from shared.streams import SETTINGS_BUCKET

log = logging.getLogger(__name__)

KEY = "system"


async def put_settings(js: JetStreamContext, settings: SystemSettings) -> None:
    kv = await js.key_value(SETTINGS_BUCKET)
    await kv.put(KEY, msgspec.json.encode(settings))


def parse(raw: bytes | None) -> SystemSettings:
    if not raw:
        return SystemSettings()
    try:
        return msgspec.json.decode(raw, type=SystemSettings)
    except msgspec.MsgspecError as e:
        log.warning("ignoring unreadable system settings: %s", e)
        return SystemSettings()


async def watch_settings(js: JetStreamContext) -> AsyncIterator[SystemSettings]:
    """The current settings (defaults when none are stored), then each change as it is made."""
    kv = await js.key_value(SETTINGS_BUCKET)
    watcher = await kv.watch(KEY)
    seen_initial = False
    async for entry in watcher:
        if entry is None:  # end of the initial values: nothing stored yet means defaults
            if not seen_initial:
                seen_initial = True
                yield SystemSettings()
            continue
        seen_initial = True
        yield parse(entry.value)

"""GET/PUT /api/settings: live limits and retention, applied without a restart."""

from __future__ import annotations

from litestar import Controller, get, put

from services.api import patches, queries, system_settings
from services.api.auth import ADMIN, READ
from services.api.patches import SettingsPatch
from services.api.runtime import Runtime
from shared.config import SystemSettings


class SettingsController(Controller):
    path = "/api/settings"
    tags = ("settings",)

    @get(opt={"permission": READ}, cache=False)
    async def read(self, rt: Runtime) -> SystemSettings:
        return await system_settings.load(rt.pool)

    @put(opt={"permission": ADMIN})
    async def update(self, rt: Runtime, data: SettingsPatch) -> SystemSettings:
        """A full or partial body; the fields not given keep their values."""
        async with queries.connection(rt.pool) as conn:
            return await system_settings.update(conn, rt.js, patches.given(data), rt.settings.stream_replicas)

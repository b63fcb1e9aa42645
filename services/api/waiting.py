"""Why queued jobs wait, merged into job answers: asked of the dispatcher (shared/waiting.py).

Only for the queued jobs of an answer, in one request per answer; without an answer in
time (no dispatcher yet, NATS away) a queued job shows `waiting: null`.
"""

from __future__ import annotations

import msgspec
from nats.aio.client import Client as NATS

from shared import waiting
from shared.events import JobStatus
from shared.jobs import JobView


class WaitingBoard:
    def __init__(self, nc: NATS | None = None) -> None:
        self.nc = nc

    async def merge_all(self, views: list[JobView]) -> list[JobView]:
        """The jobs with why each queued one waits (and where it stands); others show null."""
        queued = [v.id for v in views if v.status == JobStatus.QUEUED]
        reasons = await waiting.ask(self.nc, queued) if queued and self.nc is not None else {}
        out: list[JobView] = []
        for v in views:
            reason = reasons.get(v.id) if v.status == JobStatus.QUEUED else None
            out.append(v if reason == v.waiting else msgspec.structs.replace(v, waiting=reason))
        return out

    async def merge(self, view: JobView) -> JobView:
        return (await self.merge_all([view]))[0]

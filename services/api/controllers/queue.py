"""GET /api/queue: the four stat cards, what runs, what finished, what waits."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Controller, get

from services.api import consistency, queries
from services.api.auth import READ, Principal, project_scope
from services.api.runtime import Runtime
from services.api.schemas import QueueSummary
from services.api.waiting import WaitingBoard
from shared import readmodel
from shared.jobs import JobView


async def _views(board: WaitingBoard, docs: list[dict[str, Any]]) -> list[JobView]:
    return await board.merge_all([readmodel.view_of(d) for d in docs])


class QueueController(Controller):
    path = "/api/queue"
    tags = ("queue",)

    @get(opt={"permission": READ}, cache=False)
    async def summary(self, rt: Runtime, principal: Principal, consistent: bool = False) -> QueueSummary:
        """Counts over the last 24 hours (and the 24 before), running, recent (25) and queued jobs
        (of the token's project, for a token limited to one), and every job by status (`by_status`).

        `consistent=true`: first wait (up to a second) until the answer holds every job event
        appended before the request (the pages subscribe to the events, then read).
        """
        if consistent:
            await consistency.wait_for_projection(rt)
        project = project_scope(principal)
        counts, by_status, running, recent, waiting = await asyncio.gather(
            queries.queue_counts(rt.pool, project),
            queries.status_counts(rt.pool, project),
            queries.running_jobs(rt.pool, project),
            queries.recent_jobs(rt.pool, project=project),
            queries.waiting_jobs(rt.pool, project=project),
        )
        avg = counts["avg_duration"]
        return QueueSummary(
            in_queue=counts["in_queue"],
            completed_24h=counts["completed_24h"],
            completed_prev_24h=counts["completed_prev_24h"],
            failed_24h=counts["failed_24h"],
            avg_duration_s_last_50=None if avg is None else round(float(avg), 3),
            in_progress=[readmodel.view_of(d) for d in running],
            recent=[readmodel.view_of(d) for d in recent],
            queued=await _views(rt.waiting, waiting),
            by_status=by_status,
        )

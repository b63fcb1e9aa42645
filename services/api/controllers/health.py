"""GET /api/health: ready once Postgres answers, NATS is connected and the jobs projection
has caught up with BORGFLOW_JOBS as it was when the api started."""

from __future__ import annotations

import asyncio

from litestar import Controller, Response, get
from litestar.openapi.datastructures import ResponseSpec

from services.api import queries
from services.api.runtime import Runtime
from services.api.schemas import Health
from shared.version import VERSION

PING_TIMEOUT_S = 2.0


async def waiting_for(rt: Runtime) -> str | None:
    """What the api still waits for, or None when it is ready."""
    if not rt.nc.is_connected:
        return "NATS is not connected"
    try:
        await asyncio.wait_for(queries.ping(rt.pool), PING_TIMEOUT_S)
    except Exception as e:  # any failure means "not ready", never a 500
        return f"Postgres does not answer ({type(e).__name__})"
    if not rt.caught_up:
        seq = await queries.checkpoint(rt.pool, "jobs")
        if seq < rt.start_seq:
            return f"the jobs projection is at event {seq} of {rt.start_seq}"
        rt.caught_up = True  # it only moves forward
    return None


class HealthController(Controller):
    path = "/api/health"
    tags = ("health",)

    @get(
        opt={"exclude_from_auth": True},
        summary="Readiness",
        cache=False,
        responses={503: ResponseSpec(Health, description="Not ready yet: `detail` says what it waits for")},
    )
    async def health(self, rt: Runtime) -> Response[Health]:
        detail = await waiting_for(rt)
        if detail is None:
            return Response(Health(status="ok", version=VERSION), status_code=200)
        return Response(Health(status="starting", version=VERSION, detail=detail), status_code=503)

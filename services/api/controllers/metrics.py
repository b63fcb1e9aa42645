"""GET /metrics on the api's own port, without a token, for Prometheus to scrape."""

from __future__ import annotations

from litestar import Controller, Response, get

from services.api import queries
from services.api.runtime import Runtime
from shared import metrics
from shared.events import JobStatus

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


async def count_jobs(rt: Runtime) -> None:
    """borgflow_jobs by status, from the read model (every status shown, 0 when none)."""
    counts = await queries.job_counts(rt.pool)
    for status in JobStatus:
        metrics.JOBS.labels(status=status.value).set(counts.get(status.value, 0))


class MetricsController(Controller):
    path = "/metrics"
    tags = ("health",)
    include_in_schema = False

    @get(opt={"exclude_from_auth": True}, cache=False, media_type=CONTENT_TYPE)
    async def scrape(self) -> Response[bytes]:
        """The Prometheus text page (every metric of this process)."""
        return Response(await metrics.render(), media_type=CONTENT_TYPE)

"""Which project a job belongs to, remembered for the websockets' filters (it never changes)."""

from __future__ import annotations

from collections import OrderedDict

from nats.js import JetStreamContext

from services.api import queries
from shared import bus

# Job ids whose project is remembered; the oldest are forgotten first.
CACHE_SIZE = 20_000


class ProjectCache:
    """job id -> project, looked up once (read model, else the job's events) and kept."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self._size = size
        self._known: OrderedDict[str, str] = OrderedDict()

    def remember(self, job_id: str, project: str) -> None:
        self._known[job_id] = project
        self._known.move_to_end(job_id)
        while len(self._known) > self._size:
            self._known.popitem(last=False)

    async def project_of(self, pool: queries.Db, js: JetStreamContext, job_id: str) -> str | None:
        """The job's project; None for a job that does not exist (or no longer does)."""
        known = self._known.get(job_id)
        if known is not None:
            return known
        project = await queries.job_project(pool, job_id)
        if project is None:
            view = await bus.load_job(js, job_id)
            project = view.project if view is not None else None
        if project is not None:
            self.remember(job_id, project)
        return project

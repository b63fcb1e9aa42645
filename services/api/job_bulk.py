"""POST /api/jobs/bulk: cancel, retry or delete many jobs, named by id or by a search.

Each job is decided on its own exactly as its single-job endpoint decides it (job_actions):
a job of a project the token does not see is refused as absent (404), a finished job's
cancel or a running job's delete is refused 409, and what one refusal says never stops the
others. A search (`q`) acts on every job it matches in the token's projects, up to MAX_MATCHED.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from services.api import filters, job_actions, jobsearch, queries
from services.api.auth import WRITE, Principal, may, project_scope
from services.api.controllers import safe_id
from services.api.errors import ApiError, BadRequest, Forbidden, NotFound
from services.api.queries import JobFilter
from services.api.runtime import Runtime

MAX_IDS = 1000
MAX_MATCHED = 10_000
# Jobs acted on at once: each is a few NATS round trips; more would only queue up in NATS.
CONCURRENCY = 8

Action = Literal["cancel", "retry", "delete"]


class BulkRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Either `ids` (up to 1,000) or `q` (a search as GET /api/jobs takes it, not empty).
    `dry_run`: only count what `q` or `ids` name (for a confirmation), change nothing."""

    action: Action
    ids: Annotated[list[Annotated[str, Meta(min_length=1, max_length=100)]], Meta(max_length=MAX_IDS)] | None = None
    q: Annotated[str, Meta(max_length=2000)] | None = None
    since: Annotated[str, Meta(max_length=40)] | None = None  # with `q`: only jobs created since (1h, 7d, ISO 8601)
    dry_run: bool = False


class BulkItem(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One job: `status` is what its single-job endpoint would have answered."""

    id: str
    ok: bool
    status: int
    detail: str | None = None
    job_id: str | None = None  # a retry: the new job


class BulkAnswer(msgspec.Struct, kw_only=True):
    action: Action
    matched: int
    done: int
    refused: int
    items: list[BulkItem]


async def _targets(rt: Runtime, principal: Principal, req: BulkRequest) -> list[str]:
    if (req.ids is None) == (req.q is None):
        raise BadRequest("give either ids (a list of job ids) or q (a search), not both or neither", "ids")
    if req.ids is not None:
        return list(dict.fromkeys(req.ids))
    try:
        search = jobsearch.parse(req.q)
    except jobsearch.SearchError as e:
        raise BadRequest(str(e), "q") from None
    if search.empty:  # blank, or only `""`
        raise BadRequest("q: an empty search would act on every job; say which (status:failed, plan:home)", "q")
    since = filters.parse_time(req.since, "since", datetime.now(UTC))
    f = JobFilter(search=search, project=project_scope(principal), since=since, limit=MAX_MATCHED + 1)
    ids = await queries.job_ids(rt.pool, f)
    if len(ids) > MAX_MATCHED:
        raise BadRequest(f"q matches more than {MAX_MATCHED:,} jobs: narrow the search", "q")
    return ids


async def _one(rt: Runtime, principal: Principal, action: Action, job_id: str) -> BulkItem:
    try:
        safe_id(job_id, "job")
        project = await rt.projects.project_of(rt.pool, rt.js, job_id)
        scope = project_scope(principal)
        if project is None or (scope is not None and project != scope):
            raise NotFound(f"no job {job_id}")
        if action == "cancel":
            view = await job_actions.cancel(rt, job_id, principal.name)
            return BulkItem(id=job_id, ok=True, status=202, detail=str(view.status))
        if action == "retry":
            view = await job_actions.retry(rt, job_id, principal.name)
            return BulkItem(id=job_id, ok=True, status=201, job_id=view.id)
        await job_actions.delete(rt, job_id, principal.name)
        return BulkItem(id=job_id, ok=True, status=204)
    except ApiError as e:
        return BulkItem(id=job_id, ok=False, status=e.status, detail=e.detail)


async def run(rt: Runtime, principal: Principal, req: BulkRequest) -> BulkAnswer:
    if req.action == "delete" and not may(principal.role, WRITE):
        raise Forbidden(f"token {principal.name!r} has role {principal.role!r}, which may not delete jobs (write)")
    ids = await _targets(rt, principal, req)
    if req.dry_run:
        return BulkAnswer(action=req.action, matched=len(ids), done=0, refused=0, items=[])
    gate = asyncio.Semaphore(CONCURRENCY)

    async def gated(job_id: str) -> BulkItem:
        async with gate:
            return await _one(rt, principal, req.action, job_id)

    items = list(await asyncio.gather(*(gated(i) for i in ids)))
    done = sum(1 for i in items if i.ok)
    return BulkAnswer(action=req.action, matched=len(ids), done=done, refused=len(items) - done, items=items)

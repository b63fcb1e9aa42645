"""Jobs: submit, browse, cancel, retry, delete; the secret an executor fetches at run time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import Controller, Response, delete, get, post
from litestar.params import Parameter

from services.api import consistency, filters, job_actions, queries, scope
from services.api.auth import READ, RUN, SECRET, WRITE, Principal, project_scope
from services.api.controllers import safe_id
from services.api.errors import NotFound
from services.api.queries import JobFilter
from services.api.runtime import Runtime
from services.api.schemas import JobPage, Secret
from shared import bus, readmodel
from shared.events import TERMINAL
from shared.jobs import JobView
from shared.submit import InvalidRequest, Origin, accept, build_spec, parse_request


async def job_view(rt: Runtime, job_id: str, principal: Principal | None = None) -> JobView:
    """The job from the read model, else from its events (a job the projector has not seen yet).

    With `principal`, a job of a project it does not see is answered 404, as an absent one.
    """
    safe_id(job_id, "job")
    doc = await queries.job_doc(rt.pool, job_id)
    view = readmodel.view_of(doc) if doc is not None else None
    if view is None or view.status not in TERMINAL:
        # An active job is read from its events too: the read model may trail them by a
        # moment, and a page that subscribes and then reads must not miss a transition.
        live = await bus.load_job(rt.js, job_id)
        if live is not None and (view is None or live.last_seq > view.last_seq):
            view = live if view is None or live.progress else msgspec.structs.replace(live, progress=view.progress)
    if view is None:
        raise NotFound(f"no job {job_id}")
    if principal is not None:
        scope.require_visible(principal, view.project, "job", job_id)
    return rt.waiting.merge(view)


class JobController(Controller):
    path = "/api/jobs"
    tags = ("jobs",)

    @post(opt={"permission": RUN})
    async def create(self, rt: Runtime, principal: Principal, data: dict[str, Any]) -> JobView:
        """Queue a job (CONTRACT.md section 2 lists the bodies per type).

        A plan or repository of a project the token does not see is answered as an absent one.
        """
        req = parse_request(data)
        origin = Origin(requested_by=principal.name)
        async with queries.connection(rt.pool) as conn:
            spec = await build_spec(conn, req, origin)
            if not scope.sees(principal, spec.project):
                if req.plan_id:
                    raise InvalidRequest("plan_id", f"plan_id: no plan with id {req.plan_id!r}")
                if spec.repository_id:
                    raise InvalidRequest("repository_id", f"repository_id: no repository with id {req.repository_id!r}")
            spec = job_actions.in_own_project(spec, project_scope(principal))
            spec = await accept(conn, rt.js, spec, origin)
        rt.projects.remember(spec.id, spec.project)
        return rt.waiting.merge(await job_actions.accepted_view(rt.pool, spec))

    @get(opt={"permission": READ})
    async def list_all(
        self,
        rt: Runtime,
        principal: Principal,
        status: str | None = None,
        job_type: str | None = Parameter(query="type", default=None),
        agent: str | None = None,
        repository_id: str | None = None,
        plan_id: str | None = None,
        trigger: str | None = None,
        q: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        consistent: bool = False,
    ) -> JobPage:
        """Jobs newest first; pass `next_cursor` back as `cursor` for the next page.

        `consistent=true`: first wait (up to a second) until the answer holds every job event
        appended before the request.
        """
        if consistent:
            await consistency.wait_for_projection(rt)
        now = datetime.now(UTC)
        f = JobFilter(
            statuses=filters.parse_statuses(status),
            types=filters.parse_types(job_type),
            agent=agent,
            repository_id=repository_id,
            plan_id=plan_id,
            trigger=trigger,
            q=q.strip() if q and q.strip() else None,
            project=project_scope(principal),
            since=filters.parse_time(since, "since", now),
            until=filters.parse_time(until, "until", now),
            before=filters.decode_cursor(cursor),
            limit=filters.parse_limit(limit) + 1,  # one more tells whether a next page exists
        )
        rows = await queries.jobs(rt.pool, f)
        page = rows[: f.limit - 1]
        next_cursor = None
        if len(rows) == f.limit and page:
            next_cursor = filters.encode_cursor(page[-1]["created_at"], page[-1]["id"])
        return JobPage(items=rt.waiting.merge_all([readmodel.view_of(r["doc"]) for r in page]), next_cursor=next_cursor)

    @get("/{job_id:str}", opt={"permission": READ})
    async def get_one(self, rt: Runtime, principal: Principal, job_id: str) -> JobView:
        return await job_view(rt, job_id, principal)

    @post("/{job_id:str}/cancel", status_code=202, opt={"permission": RUN})
    async def cancel(self, rt: Runtime, principal: Principal, job_id: str) -> JobView:
        """Cancel a queued or sent job; ask the executor to stop a running one."""
        await job_view(rt, job_id, principal)
        return rt.waiting.merge(await job_actions.cancel(rt, job_id, principal.name))

    @post("/{job_id:str}/retry", opt={"permission": RUN})
    async def retry(self, rt: Runtime, principal: Principal, job_id: str) -> JobView:
        """A new job like this failed or cancelled one (`retry_of` points back)."""
        await job_view(rt, job_id, principal)
        return rt.waiting.merge(await job_actions.retry(rt, job_id, principal.name))

    @delete("/{job_id:str}", opt={"permission": WRITE})
    async def remove(self, rt: Runtime, principal: Principal, job_id: str) -> None:
        """Delete a finished or queued job with its log; 409 while it is sent or running."""
        safe_id(job_id, "job")
        if project_scope(principal) is not None:
            await job_view(rt, job_id, principal)
        # Unscoped: job_actions.delete answers 404 itself, and still cleans up a job deleted half-way.
        await job_actions.delete(rt, job_id, principal.name)

    @get("/{job_id:str}/secret", opt={"permission": SECRET}, cache=False)
    async def secret(self, rt: Runtime, job_id: str) -> Response[Secret]:
        """The repository passphrase, only while the job is sent or running (executors)."""
        passphrase = await job_actions.secret(rt, safe_id(job_id, "job"))
        return Response(Secret(passphrase=passphrase), headers={"Cache-Control": "no-store"})

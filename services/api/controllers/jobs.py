"""Jobs: submit, browse, cancel, retry, delete; the secret an executor fetches at run time."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
from litestar import Controller, Response, delete, get, post
from litestar.params import Parameter

from services.api import (
    consistency,
    filters,
    idempotency,
    job_actions,
    job_bulk,
    job_logs,
    job_secrets,
    job_timeline,
    jobsearch,
    queries,
    scope,
)
from services.api.auth import READ, RUN, SECRET, WRITE, Principal, project_scope
from services.api.controllers import safe_id
from services.api.errors import BadRequest, NotFound
from services.api.job_bodies import JobBody, as_request
from services.api.queries import JobFilter
from services.api.runtime import Runtime
from services.api.schemas import BatchAnswer, BatchRefusal, BatchSubmit, JobPage, Secret
from shared import bus, readmodel
from shared.db import Conn
from shared.events import TERMINAL, JobSpec
from shared.jobs import JobView
from shared.submit import (
    InvalidRequest,
    JobRequest,
    Origin,
    QueueingUnconfirmed,
    Rejected,
    accept,
    accept_unplanned,
    build_spec,
    parse_request,
    target_password,
)


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
    return await rt.waiting.merge(view)


def _search(q: str | None) -> jobsearch.Search | None:
    """The typed search of `q`, or 400 naming `q` and the term it cannot take."""
    try:
        search = jobsearch.parse(q)
    except jobsearch.SearchError as e:
        raise BadRequest(str(e), "q") from None
    return None if search.empty else search


async def _spec_for(conn: Conn, principal: Principal, req: JobRequest, origin: Origin) -> JobSpec:
    """The job a principal asks for, built; another project's plan or repository reads as absent."""
    spec = await build_spec(conn, req, origin)
    if not scope.sees(principal, spec.project):
        if req.plan_id:
            raise InvalidRequest("plan_id", f"plan_id: no plan with id {req.plan_id!r}")
        if spec.repository_id:
            raise InvalidRequest("repository_id", f"repository_id: no repository with id {req.repository_id!r}")
    return job_actions.in_own_project(spec, project_scope(principal))


async def _keep_target_password(rt: Runtime, conn: Conn, req: JobRequest, spec: JobSpec) -> None:
    """Seal a restore's target password under the job's id before the job is queued (job_secrets)."""
    password = target_password(req)
    if password is not None:
        await job_secrets.store_target_password(rt, conn, spec.id, password)


class JobController(Controller):
    path = "/api/jobs"
    tags = ("jobs",)

    @post(
        opt={"permission": RUN, "conflict": True},
        responses={202: idempotency.BEING_QUEUED},
        exception_handlers={QueueingUnconfirmed: idempotency.being_queued},
    )
    async def create(
        self,
        rt: Runtime,
        principal: Principal,
        data: JobBody,
        idempotency_key: str | None = Parameter(header=idempotency.HEADER, default=None),
    ) -> JobView:
        """Queue a job: the body is one of the job types, each with its own fields and options.

        A plan or repository of a project the token does not see is answered as an absent one.
        With an `Idempotency-Key` header, a retry of the same request (same token, key and
        body) answers the job the first one queued instead of queueing another.
        When NATS does not confirm the append in time, 202 answers the job (it may yet be queued).
        """
        body = as_request(data)
        req = parse_request(body)
        origin = Origin(requested_by=principal.name)
        if idempotency_key is not None:
            claim = await idempotency.claim(rt.pool, principal.id, idempotency.check_key(idempotency_key), body)
            if claim.replay and await bus.last_job_seq(rt.js, claim.job_id) > 0:
                return await job_view(rt, claim.job_id, principal)
            origin = Origin(requested_by=principal.name, job_id=claim.job_id, msg_id=idempotency.msg_id(claim.job_id))
        async with queries.connection(rt.pool) as conn:
            spec = await _spec_for(conn, principal, req, origin)
            await _keep_target_password(rt, conn, req, spec)
            spec = await accept(conn, rt.js, spec, origin)
        rt.projects.remember(spec.id, spec.project)
        return await rt.waiting.merge(await job_actions.accepted_view(rt.pool, spec))

    @post("/batch", opt={"permission": RUN})
    async def create_many(self, rt: Runtime, principal: Principal, data: BatchSubmit) -> BatchAnswer:
        """Queue up to 1,000 jobs in one request; each is accepted or refused on its own.

        `items` answers each body in order: the job, exactly as POST /api/jobs would have
        queued it, or `{"error": {"status", "detail", "field"?}}` with the status a single
        POST would have answered. The jobs of no plan are appended together.
        """
        items: list[JobView | BatchRefusal | None] = [None] * len(data.jobs)
        unplanned: list[tuple[int, JobSpec]] = []
        async with queries.connection(rt.pool) as conn:
            for i, body in enumerate(data.jobs):
                try:
                    req = parse_request(body)
                    spec = await _spec_for(conn, principal, req, Origin(requested_by=principal.name))
                    await _keep_target_password(rt, conn, req, spec)
                    if spec.plan_id:  # its plan's queue behaviour gates it, one at a time
                        spec = await accept(conn, rt.js, spec, Origin(requested_by=principal.name))
                        items[i] = job_actions.view_of_spec(spec)
                    else:
                        unplanned.append((i, spec))
                except (InvalidRequest, Rejected) as e:
                    items[i] = BatchRefusal.of(e)
            accepted = await accept_unplanned(conn, rt.js, [s for _, s in unplanned])
        for (i, _), spec in zip(unplanned, accepted, strict=True):
            items[i] = job_actions.view_of_spec(spec)
        for item in items:
            if isinstance(item, JobView):
                rt.projects.remember(item.id, item.project)
        views = await rt.waiting.merge_all([v for v in items if isinstance(v, JobView)])
        merged = iter(views)
        answers = [next(merged) if isinstance(v, JobView) else v for v in items if v is not None]
        return BatchAnswer(items=[msgspec.to_builtins(a) for a in answers])

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

        `q` is a typed search: `type:backup status:failed,cancelled agent:web-1 repo:home
        plan:"db nightly" trigger:schedule exit:2` and free words, each of which must appear in
        the job's agent, plan, repository or type name (or be its id); a term it cannot take is
        answered 400 naming `q` and the term.

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
            search=_search(q),
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
        return JobPage(
            items=await rt.waiting.merge_all([readmodel.view_of(r["doc"]) for r in page]), next_cursor=next_cursor
        )

    @post("/bulk", status_code=200, opt={"permission": RUN})
    async def bulk(self, rt: Runtime, principal: Principal, data: job_bulk.BulkRequest) -> job_bulk.BulkAnswer:
        """Cancel, retry or delete many jobs: `{"action", "ids": [..]}` or `{"action", "q": "status:failed"}`.

        Each job is decided as its own endpoint would decide it; `items` says per job whether it
        was (`ok`, the `status` that endpoint answers, a retry's new `job_id`) and why not
        (`detail`). `q` acts on everything the search matches in the token's projects (up to
        10,000 jobs); `dry_run: true` only counts them (`matched`). Delete needs the write role.
        """
        return await job_bulk.run(rt, principal, data)

    @get("/{job_id:str}/history", opt={"permission": READ})
    async def history(self, rt: Runtime, principal: Principal, job_id: str) -> job_timeline.JobHistory:
        """The job's timeline (each transition and why it waits now, with its time and who caused
        it: a token's name, the scheduler, the dispatcher or the executor's agent), every attempt
        of its work (the first job and each retry, with exit code and error), and the plan and
        repository configuration it was queued with (no secrets)."""
        view = await job_view(rt, job_id, principal)
        events = [e for e, _ in await bus.job_events(rt.js, job_id)]
        family = [readmodel.view_of(d) for d in await queries.retry_family(rt.pool, job_id)]
        attempts = [job_timeline.attempt_of(v) for v in family if scope.sees(principal, v.project)]
        if not any(a.id == view.id for a in attempts):
            attempts.append(job_timeline.attempt_of(view))  # not in the read model yet
            attempts.sort(key=lambda a: (a.created_at, a.id))
        return job_timeline.JobHistory(
            timeline=job_timeline.timeline(events, view.waiting, datetime.now(UTC)),
            attempts=attempts,
            configuration=job_timeline.configuration(events),
        )

    @get("/{job_id:str}", opt={"permission": READ})
    async def get_one(self, rt: Runtime, principal: Principal, job_id: str) -> JobView:
        """The job; once finished, `log_note` says why its log is not kept, when it is not."""
        return await job_logs.with_log_note(rt, await job_view(rt, job_id, principal))

    @post("/{job_id:str}/cancel", status_code=202, opt={"permission": RUN, "conflict": True})
    async def cancel(self, rt: Runtime, principal: Principal, job_id: str) -> JobView:
        """Cancel a queued or sent job; ask the executor to stop a running one."""
        await job_view(rt, job_id, principal)
        return await rt.waiting.merge(await job_actions.cancel(rt, job_id, principal.name))

    @post("/{job_id:str}/retry", opt={"permission": RUN, "conflict": True})
    async def retry(self, rt: Runtime, principal: Principal, job_id: str) -> JobView:
        """A new job like this failed or cancelled one (`retry_of` points back)."""
        await job_view(rt, job_id, principal)
        return await rt.waiting.merge(await job_actions.retry(rt, job_id, principal.name))

    @delete("/{job_id:str}", opt={"permission": WRITE, "conflict": True})
    async def remove(self, rt: Runtime, principal: Principal, job_id: str) -> None:
        """Delete a finished or queued job with its log; 409 while it is sent or running."""
        safe_id(job_id, "job")
        if project_scope(principal) is not None:
            await job_view(rt, job_id, principal)
        # Unscoped: job_actions.delete answers 404 itself, and still cleans up a job deleted half-way.
        await job_actions.delete(rt, job_id, principal.name)

    @get("/{job_id:str}/secret", opt={"permission": SECRET, "conflict": True}, cache=False)
    async def secret(self, rt: Runtime, principal: Principal, job_id: str) -> Response[Secret]:
        """The repository passphrase, only while the job is sent or running (executors); for a job
        that dumps its plan's databases their passwords (`databases`, by `<kind>/<database>`), for
        a database restore its target's (`target_password`).

        An agent token gets only its own agent's jobs: another agent's job is 404, and
        one of its own that is not sent or running 403.
        """
        agent = principal.agent if principal.role == "agent" else None
        secret: Secret = await job_actions.secret(rt, safe_id(job_id, "job"), agent)
        return Response(secret, headers={"Cache-Control": "no-store"})

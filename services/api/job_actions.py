"""Changing a job from the api: cancel, retry, delete, and the secret it runs with.

Each decision is taken on the job as its events make it (the stream, not the read
model) and appended with compare-and-set on the job's last sequence: if anything
else (the dispatcher, an executor) appended in between, the decision is taken again
on the new state, a few times.
"""

from __future__ import annotations

import contextlib
import logging

import asyncpg
import msgspec
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError as NatsNotFound

from services.api import job_secrets, queries
from services.api.errors import Conflict, Forbidden, NotFound, Unavailable
from services.api.runtime import Runtime
from services.api.schemas import Secret
from shared import bus, db, ids, readmodel, secretrows
from shared.events import (
    TERMINAL,
    CancelRequestedData,
    DeletedData,
    JobCancelled,
    JobCancelRequested,
    JobDeleted,
    JobError,
    JobQueued,
    JobSpec,
    JobStatus,
    OutcomeData,
)
from shared.exceptions import ConcurrencyConflict, ConfigError, SecretUnreadable
from shared.jobs import JobView, evolve, labels_of
from shared.streams import LOGS, PROGRESS
from shared.submit import JobRequest, Origin, accept, build_spec, resubmit

log = logging.getLogger(__name__)

ATTEMPTS = 5
RETRYABLE = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})


async def load(js: JetStreamContext, job_id: str) -> tuple[JobView | None, int]:
    """The job folded from its events, and the compare-and-set token for its next event."""
    return await bus.load_for_update(js, job_id)


async def write_through(pool: asyncpg.Pool, view: JobView) -> JobView:
    """Put a view the api just made into the read model, so a GET right after shows it.

    It is exactly the projector's fold of the same events (progress is merged in at
    read time from job_progress), so the row equals what a replay makes.
    """
    try:
        async with queries.connection(pool) as conn:
            await readmodel.upsert_jobs(conn, [view])
    except db.TRANSIENT as e:
        # The event is appended: the job changed. The projector will write the row.
        log.warning("read model not written through: %s", type(e).__name__, extra={"job_id": view.id})
    return view


async def cancel(rt: Runtime, job_id: str, who: str) -> JobView:
    """Cancel a queued or sent job at once; ask the executor to stop a running one."""
    for _ in range(ATTEMPTS):
        view, last = await load(rt.js, job_id)
        if view is None:
            raise NotFound(f"no job {job_id}")
        if view.status in TERMINAL:
            raise Conflict(f"job already {view.status}")
        if view.status == JobStatus.RUNNING:
            if view.cancel_requested:
                return await write_through(rt.pool, view)  # asked already; the executor is stopping it
            event: JobCancelled | JobCancelRequested = JobCancelRequested(
                job_id=job_id, data=CancelRequestedData(by=who)
            )
        else:
            event = JobCancelled(
                job_id=job_id,
                data=OutcomeData(
                    error=JobError(
                        kind="cancelled_by_user",
                        message=f"cancelled by {who} while {view.status}",
                        hint="retry it to run it after all",
                    ),
                    job=labels_of(view),
                ),
            )
        try:
            ack = await bus.publish(rt.js, event, expect_last_seq=last)
        except ConcurrencyConflict:
            log.info("job changed while cancelling, deciding again", extra={"job_id": job_id})
            continue
        new = evolve(view, event, ack.seq)
        assert new is not None  # a cancel never deletes
        log.info("job %s", event.type, extra={"job_id": job_id, "action": "cancel", "by": who})
        return await write_through(rt.pool, new)
    raise Conflict(f"job {job_id} kept changing while it was being cancelled; try again")


async def delete(rt: Runtime, job_id: str, who: str) -> None:
    """Remove a finished (or still queued) job from history, with its log and progress."""
    for _ in range(ATTEMPTS):
        view, last = await load(rt.js, job_id)
        if view is None:
            if last == 0 and await queries.job_doc(rt.pool, job_id) is None:
                raise NotFound(f"no job {job_id}")
            break  # deleted already (or a row without events): clean up what is left
        if view.status in (JobStatus.SENT, JobStatus.RUNNING):
            raise Conflict(f"job {job_id} is {view.status}: cancel it first, then delete it")
        try:
            if view.status == JobStatus.QUEUED:
                cancelled = JobCancelled(
                    job_id=job_id,
                    data=OutcomeData(
                        error=JobError(kind="cancelled_by_user", message=f"cancelled by {who} to delete it"),
                        job=labels_of(view),
                    ),
                )
                last = (await bus.publish(rt.js, cancelled, expect_last_seq=last)).seq
            await bus.publish(rt.js, JobDeleted(job_id=job_id, data=DeletedData(by=who)), expect_last_seq=last)
        except ConcurrencyConflict:
            continue
        break
    else:
        raise Conflict(f"job {job_id} kept changing while it was being deleted; try again")
    async with queries.connection(rt.pool) as conn:
        await readmodel.delete_jobs(conn, [job_id])
        await job_secrets.drop(conn, job_id)
    await _purge(rt.js, LOGS, f"borgflow.logs.{job_id}")
    await _purge(rt.js, PROGRESS, f"borgflow.progress.{job_id}")
    log.info("job deleted", extra={"job_id": job_id, "action": "delete", "by": who})


async def _purge(js: JetStreamContext, stream: str, subject: str) -> None:
    with contextlib.suppress(NatsNotFound):
        await js.purge_stream(stream, subject=subject)


def in_own_project(spec: JobSpec, project: str | None) -> JobSpec:
    """A job of no repository or plan (a ping) belongs to the project of who asked for it.

    Other jobs take their repository's or plan's project (shared.submit); a ping would
    otherwise land in `default`, out of sight of a token limited to another project.
    """
    if project is None or spec.repository_id or spec.plan_id or spec.project == project:
        return spec
    return msgspec.structs.replace(spec, project=project)


async def _again(
    conn: asyncpg.Connection, rt: Runtime, original: JobSpec, origin: Origin, tried_archive: str | None
) -> JobSpec:
    """Queue a job like `original`: from the current configuration (resubmit), keeping the
    project of a job that has no repository or plan."""
    if original.repository_id or original.plan_id:
        return await resubmit(conn, rt.js, original, origin, tried_archive)
    req = JobRequest(
        type=original.type,  # type: ignore[arg-type]  # a stored job's type is one of JobRequest's
        agent=original.agent,
        options=dict(original.options),
        priority=original.priority,
    )
    spec = in_own_project(await build_spec(conn, req, origin), original.project)
    return await accept(conn, rt.js, spec, origin)


async def retry(rt: Runtime, job_id: str, who: str) -> JobView:
    """A new job like a failed or cancelled one, with `retry_of` and the next attempt number."""
    view, _ = await load(rt.js, job_id)
    if view is None:
        raise NotFound(f"no job {job_id}")
    if view.status not in RETRYABLE:
        raise Conflict(f"only a failed or cancelled job can be retried; job {job_id} is {view.status}")
    original = next((e.data for e, _ in await bus.job_events(rt.js, job_id) if isinstance(e, JobQueued)), None)
    if original is None:
        raise NotFound(f"no job {job_id}")
    # Its id now: a restore's target password is copied to it before it is queued.
    origin = Origin(
        requested_by=who, trigger=view.trigger, retry_of=job_id, attempt=view.attempt + 1, job_id=ids.new_id()
    )
    async with queries.connection(rt.pool) as conn:
        if original.type in job_secrets.RESTORING_TYPES and origin.job_id is not None:
            await job_secrets.copy_target_password(rt, conn, job_id, origin.job_id)
        # A failed backup may have written its archive after all (its agent was lost
        # after borg finished): the retry looks for it before backing up again.
        tried = view.result.archive if view.status == JobStatus.FAILED and view.result is not None else None
        spec = await _again(conn, rt, original, origin, tried)
    rt.projects.remember(spec.id, spec.project)
    log.info("job retried", extra={"job_id": spec.id, "retry_of": job_id, "by": who})
    return await accepted_view(rt.pool, spec)


def view_of_spec(spec: JobSpec) -> JobView:
    """A just-queued job as its job.queued makes it."""
    view = evolve(None, JobQueued(job_id=spec.id, data=spec, at=spec.created_at))
    assert view is not None  # job.queued always makes a job
    return view


async def accepted_view(store: queries.Db, spec: JobSpec) -> JobView:
    """A just-submitted job as its row shows it (as its first event makes it, without a row)."""
    try:
        doc = await queries.job_doc(store, spec.id)
    except db.TRANSIENT:
        doc = None  # the job is queued all the same: answer from its first event
    if doc is not None:
        return readmodel.view_of(doc)
    return view_of_spec(spec)


async def secret(rt: Runtime, job_id: str, agent: str | None = None) -> Secret:
    """The passphrase of the job's repository (and the database passwords it runs with,
    services/api/job_secrets.py), only while the job is sent or running.

    With `agent` (an agent token's own agent): another agent's job is answered 404, as
    if absent, and a job of this agent that is not sent or running 403.
    """
    view = await bus.load_job(rt.js, job_id)
    if view is None or (agent is not None and view.agent != agent):
        raise NotFound(f"no job {job_id}")
    if view.status not in (JobStatus.SENT, JobStatus.RUNNING):
        detail = f"job {job_id} is {view.status}: its secret is given only while it is sent or running"
        raise Forbidden(detail) if agent is not None else Conflict(detail)
    try:
        databases, target = await job_secrets.of_job(rt, view)
    except Unavailable as e:
        log.error("%s", e.detail, extra={"job_id": job_id, "action": "secret.unreadable"})
        raise
    return Secret(passphrase=await _passphrase(rt, view), databases=databases, target_password=target)


async def _passphrase(rt: Runtime, view: JobView) -> str | None:
    if view.repository_id is None:
        return None
    sealed = await queries.passphrase_of(rt.pool, view.repository_id)
    if sealed is None:
        return None
    try:
        return secretrows.unseal(rt.secret_keys, secretrows.PASSPHRASE, view.repository_id, sealed)
    except (SecretUnreadable, ConfigError) as e:
        # 503: the executor asks again for a while, so a key set right (and the api restarted) still saves the job.
        log.error("%s", e, extra={"job_id": view.id, "action": "secret.unreadable"})
        raise Unavailable(str(e)) from None


__all__ = ["accepted_view", "cancel", "delete", "in_own_project", "retry", "secret", "view_of_spec", "write_through"]

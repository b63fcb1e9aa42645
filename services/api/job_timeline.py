"""A job's history as a person reads it: each transition with its time, what it changed and who
caused it, and the configuration the job ran with. Pure: folded from the job's events.

Events say who acted only where a person did (`by` on cancel and delete, `requested_by` on
queue); for the rest the actor follows from what publishes that event: the dispatcher sends,
requeues and fails jobs whose agent is lost, the executor starts and ends them, the
scheduler queues scheduled jobs and gives up scheduled checks that never start.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

import msgspec

from shared.events import (
    JobCancelled,
    JobCancelRequested,
    JobCompleted,
    JobDeleted,
    JobError,
    JobEvent,
    JobFailed,
    JobQueued,
    JobRequeued,
    JobSent,
    JobStarted,
    JobStatus,
    JobWarning,
)
from shared.exceptions import InvalidTransition
from shared.jobs import JobView, Waiting, evolve

ActorKind = Literal["token", "scheduler", "dispatcher", "executor", "system"]
_CANCELLED_BY = re.compile(r"^cancelled by (.+?) (?:while \w+|to delete it)$")


class Actor(msgspec.Struct, frozen=True, kw_only=True):
    kind: ActorKind
    name: str  # a token's name, an agent's name (executor), or the service's own


class TimelineEntry(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    at: datetime
    event: str  # job.queued … job.deleted, or `waiting` for why a queued job waits now
    status: str | None = None  # the job's status after it
    actor: Actor
    detail: str = ""
    reason: str | None = None  # a waiting reason (global_limit, agent_busy, …)
    exit_code: int | None = None


def _queued_by(e: JobQueued) -> Actor:
    spec = e.data
    who = spec.requested_by or ""
    if who.startswith("automatic retry") or spec.trigger in ("retry", "chain"):
        return Actor(kind="dispatcher", name=who or "dispatcher")
    if spec.trigger == "schedule":
        return Actor(kind="scheduler", name=who or f"schedule {spec.schedule_id or '?'}")
    return Actor(kind="token", name=who) if who else Actor(kind="system", name="api")


def _queued_detail(e: JobQueued) -> str:
    spec = e.data
    parts = [f"{spec.type} queued ({spec.trigger})"]
    if spec.retry_of:
        parts.append(f"attempt {spec.attempt}, retry of {spec.retry_of}")
    if spec.parent_id:
        parts.append(f"after job {spec.parent_id}")
    if spec.message:
        parts.append(spec.message)
    if spec.not_before is not None:
        parts.append(f"not before {spec.not_before.isoformat()}")
    return "; ".join(parts)


def _ended_by(e: JobFailed | JobCancelled, before: JobView | None) -> Actor:
    """Who ended a job: the executor running it, else whoever decided it without an executor."""
    agent = before.agent if before is not None else "?"
    error = e.data.error
    kind = error.kind if error is not None else ""
    if isinstance(e, JobCancelled):
        match = _CANCELLED_BY.match(error.message) if error is not None else None
        if match:  # the api cancels a job that is not running, saying by whom
            return Actor(kind="token", name=match.group(1))
        return Actor(kind="executor", name=agent)
    if kind == "agent_lost":
        return Actor(kind="dispatcher", name="dispatcher")
    if kind == "stalled" and before is not None and before.status in (JobStatus.QUEUED, JobStatus.SENT):
        return Actor(kind="scheduler", name="scheduler")  # a scheduled check that never started
    if before is not None and before.status == JobStatus.QUEUED:
        return Actor(kind="dispatcher", name="dispatcher")
    return Actor(kind="executor", name=agent)


def _entry(e: JobEvent, before: JobView | None, after: JobView | None) -> TimelineEntry:
    status = str(after.status) if after is not None else None
    known = after or before
    agent = known.agent if known is not None else "?"
    if isinstance(e, JobQueued):
        return TimelineEntry(at=e.at, event=e.type, status=status, actor=_queued_by(e), detail=_queued_detail(e))
    if isinstance(e, JobSent):
        return TimelineEntry(
            at=e.at,
            event=e.type,
            status=status,
            actor=Actor(kind="dispatcher", name="dispatcher"),
            detail=f"sent to agent {e.data.agent}",
        )
    if isinstance(e, JobRequeued):
        # An executor refuses a send of a deposed dispatcher; the dispatcher requeues a send not started.
        by = (
            Actor(kind="executor", name=agent)
            if "lost its lease" in e.data.reason
            else Actor(kind="dispatcher", name="dispatcher")
        )
        return TimelineEntry(at=e.at, event=e.type, status=status, actor=by, detail=e.data.reason)
    if isinstance(e, JobStarted):
        where = f" ({e.data.host})" if e.data.host else ""
        borg = f", borg {e.data.borg_version}" if e.data.borg_version else ""
        return TimelineEntry(
            at=e.at,
            event=e.type,
            status=status,
            actor=Actor(kind="executor", name=e.data.agent),
            detail=f"started on {e.data.agent}{where}{borg}",
        )
    if isinstance(e, JobCancelRequested):
        who = e.data.by or "api"
        by = Actor(kind="dispatcher", name=who) if who == "dispatcher" else Actor(kind="token", name=who)
        return TimelineEntry(at=e.at, event=e.type, status=status, actor=by, detail=e.data.reason)
    if isinstance(e, JobDeleted):
        by = Actor(kind="token", name=e.data.by) if e.data.by else Actor(kind="system", name="api")
        return TimelineEntry(at=e.at, event=e.type, status=None, actor=by, detail="deleted with its log")
    # completed, warning, failed, cancelled
    data = e.data
    exit_code = None
    if data.result is not None and data.result.exit_code is not None:
        exit_code = data.result.exit_code
    elif data.error is not None:
        exit_code = data.error.exit_code
    by = _ended_by(e, before) if isinstance(e, JobFailed | JobCancelled) else Actor(kind="executor", name=agent)
    if data.error is not None:
        detail = f"{data.error.kind}: {data.error.message}"
    elif isinstance(e, JobCompleted | JobWarning) and data.result is not None and data.result.archive:
        detail = f"archive {data.result.archive}"
    else:
        detail = ""
    return TimelineEntry(at=e.at, event=e.type, status=status, actor=by, detail=detail, exit_code=exit_code)


def timeline(
    events: list[JobEvent], waiting: Waiting | None = None, now: datetime | None = None
) -> list[TimelineEntry]:
    """Each event of the job as an entry, oldest first (an event that did not apply is left out),
    then why it waits now when it is queued and the dispatcher said so."""
    out: list[TimelineEntry] = []
    view: JobView | None = None
    for e in events:
        try:
            after = evolve(view, e)
        except InvalidTransition:
            continue  # skipped exactly as the projector skips it
        out.append(_entry(e, view, after))
        view = after
    if waiting is not None and now is not None and view is not None and view.status == JobStatus.QUEUED:
        detail = f"#{waiting.position}: {waiting.detail}" if waiting.position else waiting.detail
        out.append(
            TimelineEntry(
                at=now,
                event="waiting",
                status=str(view.status),
                actor=Actor(kind="dispatcher", name="dispatcher"),
                detail=detail,
                reason=waiting.reason,
            )
        )
    return out


def configuration(events: list[JobEvent]) -> dict[str, Any]:
    """The plan and repository as they were when the job was queued (no secrets: the events
    carry only whether a passphrase or password exists)."""
    spec = next((e.data for e in events if isinstance(e, JobQueued)), None)
    if spec is None:
        return {"plan": None, "repository": None}
    return {
        "plan": msgspec.to_builtins(spec.plan) if spec.plan is not None else None,
        "repository": msgspec.to_builtins(spec.repository) if spec.repository is not None else None,
    }


class Attempt(msgspec.Struct, frozen=True, kw_only=True):
    """One job of a retried piece of work: the first, or a retry of an earlier one."""

    id: str
    attempt: int
    status: str
    retry_of: str | None
    trigger: str
    requested_by: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    exit_code: int | None
    error: JobError | None


class JobHistory(msgspec.Struct, kw_only=True):
    timeline: list[TimelineEntry]
    attempts: list[Attempt]
    configuration: dict[str, Any]  # {"plan": {…} | null, "repository": {…} | null}, as queued


def attempt_of(view: JobView) -> Attempt:
    exit_code = view.result.exit_code if view.result is not None else None
    if exit_code is None and view.error is not None:
        exit_code = view.error.exit_code
    return Attempt(
        id=view.id,
        attempt=view.attempt,
        status=str(view.status),
        retry_of=view.retry_of,
        trigger=view.trigger,
        requested_by=view.requested_by,
        created_at=view.created_at,
        started_at=view.started_at,
        finished_at=view.finished_at,
        exit_code=exit_code,
        error=view.error,
    )

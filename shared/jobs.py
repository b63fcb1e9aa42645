"""A job as people see it, and the pure fold of job events into it.

`evolve(view, event)` is replayed by the projector, the dispatcher and anyone
who loads a job from the stream, so it does no I/O and reads no clock. It
applies an event only from the states the transition table allows and raises
InvalidTransition otherwise: consumers log and skip such events, and because
the refusal is itself deterministic a replay reproduces the live result.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from shared.events import (
    JobCancelled,
    JobCancelRequested,
    JobCompleted,
    JobDeleted,
    JobError,
    JobEvent,
    JobFailed,
    JobLabels,
    JobQueued,
    JobRequeued,
    JobResult,
    JobSent,
    JobStarted,
    JobStatus,
    JobWarning,
    Progress,
)
from shared.exceptions import InvalidTransition

S = JobStatus

# event type -> the states it may apply from (None: the job does not exist yet)
ALLOWED_FROM: dict[type, frozenset[JobStatus | None]] = {
    JobQueued: frozenset({None}),
    JobSent: frozenset({S.QUEUED}),
    JobRequeued: frozenset({S.SENT}),
    JobStarted: frozenset({S.SENT}),
    JobCancelRequested: frozenset({S.QUEUED, S.SENT, S.RUNNING}),
    JobCompleted: frozenset({S.RUNNING}),
    JobWarning: frozenset({S.RUNNING}),
    JobFailed: frozenset({S.QUEUED, S.SENT, S.RUNNING}),
    JobCancelled: frozenset({S.QUEUED, S.SENT, S.RUNNING}),
    JobDeleted: frozenset({S.COMPLETED, S.WARNING, S.FAILED, S.CANCELLED}),
}

STATUS_AFTER: dict[type, JobStatus] = {
    JobQueued: S.QUEUED,
    JobSent: S.SENT,
    JobRequeued: S.QUEUED,
    JobStarted: S.RUNNING,
    JobCompleted: S.COMPLETED,
    JobWarning: S.WARNING,
    JobFailed: S.FAILED,
    JobCancelled: S.CANCELLED,
}


class Waiting(msgspec.Struct, frozen=True, kw_only=True):
    reason: str
    detail: str
    position: int | None = None


class JobView(msgspec.Struct, frozen=True, kw_only=True):
    """The job of CONTRACT.md section 2, plus names that make it readable."""

    id: str
    type: str
    status: JobStatus
    agent: str
    project: str = "default"
    repository_id: str | None = None
    repository_name: str | None = None
    plan_id: str | None = None
    plan_name: str | None = None
    schedule_id: str | None = None
    archive: str | None = None
    trigger: str = "manual"
    requested_by: str | None = None
    priority: int = 0
    retry_of: str | None = None
    parent_id: str | None = None
    created_at: datetime
    sent_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_s: float | None = None
    waiting: Waiting | None = None
    attempt: int = 1
    options: dict[str, Any] = {}
    progress: Progress | None = None
    result: JobResult | None = None
    error: JobError | None = None
    message: str | None = None
    not_before: datetime | None = None
    cancel_requested: bool = False
    pid: int | None = None
    pid_started_at: float | None = None
    borg_version: str | None = None
    log_note: str | None = None
    """Why the finished job's log is not kept (log_save_policy, retention, size cap); only
    GET /api/jobs/{id} says, null elsewhere and while the log is there."""
    # Stream sequence of the last event applied: the compare-and-set token for the
    # next transition, and what makes a redelivered event a no-op.
    last_seq: int = 0


def status_of(view: JobView | None) -> JobStatus | None:
    return None if view is None else view.status


def evolve(view: JobView | None, event: JobEvent, seq: int = 0) -> JobView | None:
    """The job after `event` (None once deleted). Raises InvalidTransition from a wrong state."""
    allowed = ALLOWED_FROM[type(event)]
    current = status_of(view)
    if current not in allowed:
        raise InvalidTransition(f"{event.type} does not apply to job {event.job_id} in state {current or 'absent'}")
    if isinstance(event, JobQueued):
        spec = event.data
        return JobView(
            id=spec.id,
            type=spec.type,
            status=S.QUEUED,
            agent=spec.agent,
            project=spec.project,
            repository_id=spec.repository_id,
            repository_name=spec.repository.name if spec.repository else None,
            plan_id=spec.plan_id,
            plan_name=spec.plan.name if spec.plan else None,
            schedule_id=spec.schedule_id,
            archive=spec.archive,
            trigger=spec.trigger,
            requested_by=spec.requested_by,
            priority=spec.priority,
            retry_of=spec.retry_of,
            parent_id=spec.parent_id,
            created_at=spec.created_at,
            attempt=spec.attempt,
            options=spec.options,
            message=spec.message,
            not_before=spec.not_before,
            last_seq=seq,
        )
    assert view is not None  # guaranteed by ALLOWED_FROM: only JobQueued applies to None
    if isinstance(event, JobDeleted):
        return None
    changes: dict[str, Any] = {"last_seq": seq}
    if type(event) in STATUS_AFTER:
        changes["status"] = STATUS_AFTER[type(event)]
    if isinstance(event, JobSent):
        changes |= {"sent_at": event.at, "agent": event.data.agent}
    elif isinstance(event, JobRequeued):
        changes |= {"sent_at": None}
    elif isinstance(event, JobStarted):
        started = event.data
        changes |= {
            "started_at": event.at,
            "pid": started.pid,
            "pid_started_at": started.pid_started_at,
            "borg_version": started.borg_version,
        }
    elif isinstance(event, JobCancelRequested):
        changes["cancel_requested"] = True
    else:  # an outcome
        d = event.data
        began = view.started_at
        changes |= {
            "finished_at": event.at,
            "duration_s": round((event.at - began).total_seconds(), 3) if began else None,
            "result": d.result,
            "error": d.error,
            "waiting": None,
        }
        if d.progress is not None:
            changes["progress"] = d.progress
        if d.result is not None and d.result.archive:
            changes["archive"] = d.result.archive
    return msgspec.structs.replace(view, **changes)


def fold(events: list[tuple[JobEvent, int]]) -> JobView | None:
    """Replay (event, seq) pairs from scratch, skipping those that do not apply."""
    view: JobView | None = None
    for event, seq in events:
        try:
            view = evolve(view, event, seq)
        except InvalidTransition:
            continue
    return view


def labels_of(view: JobView) -> JobLabels:
    """The names a terminal event carries (see JobLabels)."""
    return JobLabels(
        type=view.type,
        agent=view.agent,
        project=view.project,
        plan_id=view.plan_id,
        plan_name=view.plan_name,
        repository_id=view.repository_id,
        repository_name=view.repository_name,
    )


def with_progress(view: JobView, progress: Progress) -> JobView:
    return msgspec.structs.replace(view, progress=progress)

"""The scheduler's pure decisions besides fire times: stale scheduled checks, overdue plans."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.events import JobError, JobStatus
from shared.jobs import Waiting

# A scheduled check that could have started for this long but did not is failed, so
# it stops holding a scheduled-check slot and someone hears about it.
STALE_CHECK_AFTER = timedelta(minutes=15)
# The dispatcher's waiting reasons (services/dispatcher/domain.py) that mean room other
# jobs take: an agent slot, the global limit, its class's limit. Those jobs may be
# another repository's backups of hours; the check starts when they end.
WAITING_FOR_ROOM = frozenset({"agent_busy", "global_limit", "class_limit"})


@dataclass(frozen=True, kw_only=True)
class WaitingCheck:
    """A scheduled check not yet started, and what its repository has been doing."""

    job_id: str
    created_at: datetime
    repository_name: str | None = None
    agent: str = ""
    repository_busy: bool = False
    """Another job on the same repository is sent or running now."""
    repository_last_end: datetime | None = None
    """When the last job that ran on the repository finished."""
    not_before: datetime | None = None
    """An automatic retry may not start before then (its backoff)."""
    status: JobStatus = JobStatus.QUEUED
    sent_at: datetime | None = None
    """When it was sent to its agent, if it is `sent`."""
    waiting: Waiting | None = None
    """Why the dispatcher says it waits, if queued; None when no dispatcher said (or it may start now)."""


def idle_since(check: WaitingCheck) -> datetime:
    """Since when the check could have started: its queueing, the end of its retry backoff,
    the repository's last job ending, or its sending to the agent, whichever came last."""
    sent = check.sent_at if check.status == JobStatus.SENT else None
    return max(t for t in (check.created_at, check.not_before, check.repository_last_end, sent) if t is not None)


def is_stale(check: WaitingCheck, now: datetime, after: timedelta = STALE_CHECK_AFTER) -> bool:
    """Waited `after` without starting, for nothing but its own repository or its agent, while nothing ran there.

    A queued check is judged on the dispatcher's word. Waiting for room other jobs take
    (WAITING_FOR_ROOM: its agent busy with another repository's backup, say) it is not
    stuck and is never given up. Without a word (no dispatcher answered, or it may start
    now) it is not judged this time. Waiting for its agent to come back, for its own
    repository (a job there, an earlier writer, an earlier backup of its plan) or out its
    retry backoff, it is given up once nothing ran on its repository for `after`. A sent
    check is given up when its agent did not start it within `after`.
    """
    if check.status == JobStatus.QUEUED and (check.waiting is None or check.waiting.reason in WAITING_FOR_ROOM):
        return False
    return not check.repository_busy and now - idle_since(check) >= after


def stale_error(check: WaitingCheck, after: timedelta = STALE_CHECK_AFTER) -> JobError:
    minutes = round(after.total_seconds() / 60)
    where = f"repository {check.repository_name}" if check.repository_name else "its repository"
    return JobError(
        kind="stalled",
        message=f"scheduled check waited {minutes} min without starting while nothing ran on {where}"
        + (f" ({check.waiting.detail})" if check.waiting else ""),
        hint=(
            f"Check that agent {check.agent or '?'} is online and that nothing holds the repository for long "
            "(a job that does not end, an earlier writer that cannot start). A check waiting only for a free "
            "slot is never given up. The next fire time queues a new check."
        ),
    )


@dataclass(frozen=True, kw_only=True)
class PlanHealth:
    """A plan with a dead man's switch, and its last successful backup."""

    plan_id: str
    name: str
    project: str
    created_at: datetime
    alert_after_s: int
    last_success_at: datetime | None = None
    last_success_job: str | None = None

    @property
    def deadline(self) -> datetime:
        """When the plan becomes overdue unless a backup succeeds first."""
        return (self.last_success_at or self.created_at) + timedelta(seconds=self.alert_after_s)


def is_overdue(plan: PlanHealth, now: datetime) -> bool:
    return now >= plan.deadline


def overdue_raised(plan: PlanHealth, raised_last_success: datetime | None, raised: bool) -> bool:
    """Whether the last plan.overdue already covers this plan's current last success.

    Raised once per last success: a later success (a recovery) makes the next overdue new.
    """
    return raised and raised_last_success == plan.last_success_at


def overdue_msg_id(plan: PlanHealth) -> str:
    return f"overdue:{plan.plan_id}:{plan.last_success_job or 'never'}"


def overdue_detail(plan: PlanHealth) -> str:
    since = plan.last_success_at.isoformat() if plan.last_success_at else "never"
    return f"no backup of plan {plan.name} succeeded for {duration(plan.alert_after_s)} (last success: {since})"


def duration(seconds: float) -> str:
    """A span in words a person reads at a glance: `7 d`, `3 h 20 min`, `45 s`."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    parts: list[str] = []
    for unit, size in (("d", 86_400), ("h", 3600), ("min", 60), ("s", 1)):
        if s >= size:
            parts.append(f"{s // size} {unit}")
            s %= size
    return " ".join(parts[:2])

"""What may start now: a pure function of the queue, the running jobs and the limits.

No I/O, no clock: the dispatcher's app feeds it state folded from the stream
and publishes what it returns, and tests call it directly.

Order is priority (higher first), then queue order. A job that cannot start
reserves what blocks it only where skipping it could starve it: a waiting
writer reserves its repository (so a stream of reads cannot hold it back for
ever), and a job waiting for its agent or plan keeps its place among that
agent's or plan's jobs. Jobs for other agents and repositories go past it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from shared.config import SystemSettings
from shared.events import WRITING_TYPES
from shared.jobs import Waiting

MANUAL_TRIGGERS = frozenset({"manual", "cli", "api", "hook"})


@dataclass(frozen=True)
class Job:
    """What the decision needs to know of a job."""

    id: str
    type: str
    agent: str
    repository_id: str | None = None
    plan_id: str | None = None
    trigger: str = "manual"
    priority: int = 0
    order: int = 0  # queue order: the stream sequence of its (last) job.queued
    not_before: float | None = None  # an automatic retry's backoff, epoch seconds

    @property
    def writes(self) -> bool:
        return self.type in WRITING_TYPES

    @property
    def job_class(self) -> str | None:
        """The per-class limit this job counts against, if any."""
        scheduled = self.trigger == "schedule"
        if self.type == "backup":
            return "scheduled_backups" if scheduled else "manual_backups"
        if self.type == "check" and scheduled:
            return "scheduled_checks"
        return None


@dataclass(frozen=True)
class Decision:
    start: list[str]
    waiting: dict[str, Waiting] = field(default_factory=dict)


def class_limit(limits: SystemSettings, job_class: str) -> int | None:
    return {
        "manual_backups": limits.max_concurrent_manual_backups,
        "scheduled_backups": limits.max_concurrent_scheduled_backups,
        "scheduled_checks": limits.max_concurrent_scheduled_checks,
    }[job_class]


_CLASS_WORDS = {
    "manual_backups": "manual backups",
    "scheduled_backups": "scheduled backups",
    "scheduled_checks": "scheduled checks",
}


def queue_order(queued: list[Job]) -> list[Job]:
    return sorted(queued, key=lambda j: (-j.priority, j.order, j.id))


def decide(
    queued: list[Job],
    active: list[Job],
    limits: SystemSettings,
    online: set[str] | None = None,
    now: float = 0.0,
) -> Decision:
    """Which queued jobs to send now, and why each other one waits.

    `active` are the jobs sent or running; `online` the agents that may take
    work (None: every agent counts as online); `now` is compared with retries'
    `not_before`.
    """
    total = len(active)
    per_agent: Counter[str] = Counter(j.agent for j in active)
    per_class: Counter[str] = Counter(j.job_class for j in active if j.job_class)
    repo_writer: dict[str, Job] = {j.repository_id: j for j in active if j.repository_id and j.writes}
    repo_readers: Counter[str] = Counter(j.repository_id for j in active if j.repository_id and not j.writes)
    plan_busy: dict[str, Job] = {j.plan_id: j for j in active if j.plan_id and j.type == "backup"}
    reserved_repos: dict[str, Job] = {}  # repository -> the waiting writer that holds it
    agent_waiters: set[str] = set()

    start: list[str] = []
    waiting: dict[str, Waiting] = {}
    for position, job in enumerate(queue_order(queued), start=1):
        why = _backing_off(job, now) or _blocked(
            job,
            limits,
            online,
            total,
            per_agent,
            per_class,
            repo_writer,
            repo_readers,
            plan_busy,
            reserved_repos,
            agent_waiters,
        )
        if why is None:
            start.append(job.id)
            total += 1
            per_agent[job.agent] += 1
            if job.job_class:
                per_class[job.job_class] += 1
            if job.repository_id:
                if job.writes:
                    repo_writer[job.repository_id] = job
                else:
                    repo_readers[job.repository_id] += 1
            if job.plan_id and job.type == "backup":
                plan_busy[job.plan_id] = job
            continue
        reason, detail = why
        waiting[job.id] = Waiting(reason=reason, detail=detail, position=position)
        if reason in ("agent_busy", "agent_offline"):
            agent_waiters.add(job.agent)
        if job.repository_id and job.writes and job.repository_id not in reserved_repos:
            reserved_repos[job.repository_id] = job
        if job.plan_id and job.type == "backup" and job.plan_id not in plan_busy:
            plan_busy[job.plan_id] = job
    return Decision(start=start, waiting=waiting)


def _backing_off(job: Job, now: float) -> tuple[str, str] | None:
    if job.not_before is not None and job.not_before > now:
        return "retry_backoff", f"an automatic retry: it may start in {job.not_before - now:.0f}s"
    return None


def _blocked(
    job: Job,
    limits: SystemSettings,
    online: set[str] | None,
    total: int,
    per_agent: Counter[str],
    per_class: Counter[str],
    repo_writer: dict[str, Job],
    repo_readers: Counter[str],
    plan_busy: dict[str, Job],
    reserved_repos: dict[str, Job],
    agent_waiters: set[str],
) -> tuple[str, str] | None:
    """(reason, words) when `job` may not start now, else None."""
    if job.plan_id and job.type == "backup" and job.plan_id in plan_busy:
        other = plan_busy[job.plan_id]
        return "behind_plan", f"waits for backup {other.id} of the same plan to finish"
    if online is not None and job.agent not in online:
        return "agent_offline", f"agent {job.agent} is offline"
    if job.agent in agent_waiters or per_agent[job.agent] >= limits.agent_slots:
        return (
            "agent_busy",
            f"agent {job.agent} is busy ({per_agent[job.agent]} of {limits.agent_slots} slots in use)",
        )
    repo = job.repository_id
    if repo:
        if repo in repo_writer:
            other = repo_writer[repo]
            return "repository_busy", f"repository {repo} is busy with job {other.id}, a {other.type}"
        if job.writes and repo_readers[repo]:
            return "repository_busy", f"repository {repo} is being read by {repo_readers[repo]} job(s)"
        if repo in reserved_repos:
            other = reserved_repos[repo]
            return (
                "repository_busy",
                f"repository {repo} is held for job {other.id}, a {other.type} queued earlier",
            )
    if total >= limits.max_concurrent_jobs:
        return (
            "global_limit",
            f"{total} of {limits.max_concurrent_jobs} jobs are running (max_concurrent_jobs)",
        )
    if job.job_class:
        limit = class_limit(limits, job.job_class)
        if limit is not None and per_class[job.job_class] >= limit:
            return (
                "class_limit",
                f"{per_class[job.job_class]} of {limit} {_CLASS_WORDS[job.job_class]} are running",
            )
    return None

"""What may start now, and why the rest waits: the policy, as a pure function.

No I/O, no clock: the dispatcher's app feeds it state folded from the stream and
tests call it directly. `decide` is the reference: simple and slow (it looks at
every queued job); services/dispatcher/queue.py decides the same incrementally,
and a property test holds the two to the same starts and the same reasons.

Order is priority (higher first), then queue order (when the job was first
queued: a job sent back to the queue keeps its place). Walking the queue in that
order, a job starts when nothing blocks it: its retry backoff, an earlier backup
of its plan, its agent (offline, or all its slots taken), its repository (a
writer there, readers when it writes, or an earlier writer waiting for it), the
global limit, its class's limit. A job that cannot start holds back only what
could starve it: a waiting writer reserves its repository (so a stream of reads
cannot keep it out for ever), but only when it could run were the repository
free (its agent is online and it is not backing off); a waiting backup keeps its
place among its plan's backups. Jobs for other agents and repositories go past.

Why a job waits is said after the round's starts, as the state is then: the
reason a person reading it can act on. Where it stands in the queue (position)
is a matter of order alone, and the api counts it from the read model.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from shared.config import SystemSettings
from shared.events import WRITING_TYPES
from shared.jobs import Waiting

MANUAL_TRIGGERS = frozenset({"manual", "cli", "api", "hook"})
WAIT_REASONS = (
    "global_limit",
    "class_limit",
    "agent_busy",
    "agent_offline",
    "repository_busy",
    "behind_plan",
    "retry_backoff",
)


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
    return sorted(queued, key=queue_key)


def queue_key(job: Job) -> tuple[int, int, str]:
    """Higher priority first, then first queued first."""
    return (-job.priority, job.order, job.id)


def backing_off(job: Job, now: float) -> bool:
    return job.not_before is not None and job.not_before > now


def reserves(job: Job, online: set[str] | None, now: float) -> bool:
    """Whether a waiting writer holds its repository: only if it could run, the repository aside."""
    return job.writes and (online is None or job.agent in online) and not backing_off(job, now)


class Holding(Protocol):
    """What the running jobs hold, and which waiting jobs hold something back; asked per job."""

    per_agent: Counter[str]
    per_class: Counter[str]
    writer: dict[str, Job]
    readers: Counter[str]
    backup: dict[str, Job]

    @property
    def total(self) -> int: ...

    def plan_waiter(self, plan_id: str, before: Job) -> Job | None:
        """The first waiting backup of the plan ahead of `before`."""

    def reserved_by(self, repo: str, before: Job, online: set[str] | None, now: float) -> Job | None:
        """The first waiting writer ahead of `before` that holds the repository."""


@dataclass
class _Held:
    """What the jobs running (and started in this round) hold, and what the waiting reserve.

    Filled in queue order by `decide`, so "the first waiting" is always one ahead.
    """

    total: int = 0
    per_agent: Counter[str] = field(default_factory=Counter)
    per_class: Counter[str] = field(default_factory=Counter)
    writer: dict[str, Job] = field(default_factory=dict)  # repository -> its writer
    readers: Counter[str] = field(default_factory=Counter)  # repository -> readers
    backup: dict[str, Job] = field(default_factory=dict)  # plan -> its running backup
    reserved: dict[str, Job] = field(default_factory=dict)  # repository -> first waiting writer
    plan_waiters: dict[str, Job] = field(default_factory=dict)  # plan -> first waiting backup

    def plan_waiter(self, plan_id: str, before: Job) -> Job | None:
        return self.plan_waiters.get(plan_id)

    def reserved_by(self, repo: str, before: Job, online: set[str] | None, now: float) -> Job | None:
        return self.reserved.get(repo)

    def take(self, job: Job) -> None:
        self.total += 1
        self.per_agent[job.agent] += 1
        if job.job_class:
            self.per_class[job.job_class] += 1
        if job.repository_id:
            if job.writes:
                self.writer[job.repository_id] = job
            else:
                self.readers[job.repository_id] += 1
        if job.plan_id and job.type == "backup":
            self.backup[job.plan_id] = job

    def wait(self, job: Job, online: set[str] | None, now: float) -> None:
        repo = job.repository_id
        if repo and repo not in self.reserved and reserves(job, online, now):
            self.reserved[repo] = job
        if job.plan_id and job.type == "backup":
            self.plan_waiters.setdefault(job.plan_id, job)


def decide(
    queued: list[Job],
    active: list[Job],
    limits: SystemSettings,
    online: set[str] | None = None,
    now: float = 0.0,
) -> Decision:
    """Which queued jobs to send now, and why each other one waits (after those starts).

    `active` are the jobs sent or running; `online` the agents that may take
    work (None: every agent counts as online); `now` is compared with retries'
    `not_before`.
    """
    held = _Held()
    for job in active:
        held.take(job)
    start: list[str] = []
    waiting_jobs: list[Job] = []
    for job in queue_order(queued):
        if why_blocked(job, held, limits, online, now) is None:
            start.append(job.id)
            held.take(job)
        else:
            held.wait(job, online, now)
            waiting_jobs.append(job)
    # The reasons, against the state after the starts: the same walk, nothing starting.
    after = _Held()
    for job in active:
        after.take(job)
    for job in queued:
        if job.id in start:
            after.take(job)
    waiting: dict[str, Waiting] = {}
    for job in waiting_jobs:
        why = why_blocked(job, after, limits, online, now)
        assert why is not None, f"{job.id} waits for nothing"  # the state only got busier
        waiting[job.id] = Waiting(reason=why[0], detail=why[1])
        after.wait(job, online, now)
    return Decision(start=start, waiting=waiting)


def why_blocked(
    job: Job, held: Holding, limits: SystemSettings, online: set[str] | None, now: float
) -> tuple[str, str] | None:
    """(reason, words) when `job` may not start now, else None: the rules, in the order they apply."""
    if backing_off(job, now):
        return "retry_backoff", f"an automatic retry: it may start in {(job.not_before or 0) - now:.0f}s"
    if job.plan_id and job.type == "backup":
        other = held.backup.get(job.plan_id) or held.plan_waiter(job.plan_id, job)
        if other is not None:
            return "behind_plan", f"waits for backup {other.id} of the same plan to finish"
    if online is not None and job.agent not in online:
        return "agent_offline", f"agent {job.agent} is offline"
    if held.per_agent[job.agent] >= limits.agent_slots:
        in_use = held.per_agent[job.agent]
        return "agent_busy", f"agent {job.agent} is busy ({in_use} of {limits.agent_slots} slots in use)"
    repo = job.repository_id
    if repo:
        if repo in held.writer:
            other = held.writer[repo]
            return "repository_busy", f"repository {repo} is busy with job {other.id}, a {other.type}"
        if job.writes and held.readers[repo]:
            return "repository_busy", f"repository {repo} is being read by {held.readers[repo]} job(s)"
        other = held.reserved_by(repo, job, online, now)
        if other is not None:
            return (
                "repository_busy",
                f"repository {repo} is held for job {other.id}, a {other.type} queued earlier",
            )
    if held.total >= limits.max_concurrent_jobs:
        return (
            "global_limit",
            f"{held.total} of {limits.max_concurrent_jobs} jobs are running (max_concurrent_jobs)",
        )
    if job.job_class:
        limit = class_limit(limits, job.job_class)
        if limit is not None and held.per_class[job.job_class] >= limit:
            return (
                "class_limit",
                f"{held.per_class[job.job_class]} of {limit} {_CLASS_WORDS[job.job_class]} are running",
            )
    return None

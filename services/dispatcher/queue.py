"""The policy of domain.py, decided incrementally: an event re-decides only what it can unblock.

`decide()` walks every queued job on every call, which makes a burst cost O(queue²).
JobQueue keeps the same state indexed (per agent, repository, plan and class, each in
queue order) and remembers, per agent, the first of its queued jobs that could start
if a global slot were free (its candidate). An event marks stale only the candidates
it can change: a job ending on agent A, repository R and plan P touches A and the
agents with jobs queued on R or P; an agent coming online touches it and the
repositories its writers wait on. A round then takes candidates in queue order from a
heap while global slots last, checking each again as it comes out (a start may have
blocked it), so it costs the starts it makes, not the queue.

Why a job waits is worked out only when someone asks (`reason`), from the same
indices, in O(log n): nothing is computed, stored or published for the thousands of
jobs nobody looks at. tests/dispatcher/test_incremental.py holds this to `decide()`:
the same starts and the same reasons for any sequence of events.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable

import msgspec
from sortedcontainers import SortedList

from services.dispatcher.domain import Job, backing_off, class_limit, queue_key, reserves, why_blocked
from shared.config import SystemSettings
from shared.jobs import Waiting

Key = tuple[int, int, str]


class JobQueue:
    """Queued and active jobs, indexed; pure (no I/O, no clock: `now` is passed in)."""

    def __init__(self, limits: SystemSettings | None = None) -> None:
        self.limits = limits or SystemSettings()
        self.queued: dict[str, Job] = {}
        self.active: dict[str, Job] = {}
        # Queued jobs, in queue order: all of them; per agent; writers per repository; backups per plan.
        self._order = SortedList()
        self._by_agent: defaultdict[str, SortedList] = defaultdict(SortedList)
        self._writers: defaultdict[str, SortedList] = defaultdict(SortedList)
        self._backups: defaultdict[str, SortedList] = defaultdict(SortedList)
        # Which agents have jobs queued on a repository, plan or class (whom a change there touches).
        self._repo_agents: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._plan_agents: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._class_agents: defaultdict[str, Counter[str]] = defaultdict(Counter)
        # What the active jobs hold.
        self.per_agent: Counter[str] = Counter()
        self.per_class: Counter[str] = Counter()
        self.writer: dict[str, Job] = {}
        self.readers: Counter[str] = Counter()
        self.backup: dict[str, Job] = {}
        # Each agent's candidate (None: nothing of it could start), and those to work out again.
        self._candidate: dict[str, Key | None] = {}
        self._stale: set[str] = set()
        self._backoffs: list[tuple[float, str]] = []  # (not_before, job id): when a retry may start
        self._online: set[str] | None = None

    # ------------------------------------------------------------------ changes

    def add(self, job: Job) -> None:
        """A job joins the queue (or comes back to it: it keeps its place, `job.order`)."""
        self.queued[job.id] = job
        key = queue_key(job)
        self._order.add(key)
        self._by_agent[job.agent].add(key)
        if job.repository_id:
            self._repo_agents[job.repository_id][job.agent] += 1
            if job.writes:
                self._writers[job.repository_id].add(key)
                self._touch_repo(job.repository_id)  # it may reserve the repository
        if job.plan_id and job.type == "backup":
            self._backups[job.plan_id].add(key)
            self._plan_agents[job.plan_id][job.agent] += 1
            self._touch_plan(job.plan_id)
        if job.job_class:
            self._class_agents[job.job_class][job.agent] += 1
        if job.not_before is not None:
            heapq.heappush(self._backoffs, (job.not_before, job.id))
        self._stale.add(job.agent)

    def remove(self, job_id: str) -> Job | None:
        """A job leaves the queue or stops running (ended, cancelled, deleted)."""
        if job_id in self.queued:
            return self._unqueue(job_id)
        job = self.active.pop(job_id, None)
        if job is not None:
            self._release(job)
        return job

    def take(self, job_id: str) -> Job | None:
        """A queued job was sent: it holds its slots from now on."""
        job = self._unqueue(job_id) if job_id in self.queued else None
        if job is not None:
            self.active[job.id] = job
            self._hold(job)
        return job

    def activate(self, job: Job) -> None:
        """A job known only as running (a restart's replay): it holds its slots."""
        if job.id in self.queued:
            self._unqueue(job.id)
        if job.id not in self.active:
            self.active[job.id] = job
            self._hold(job)

    def requeue(self, job_id: str) -> None:
        """A sent job its agent did not take goes back to the queue, to its old place."""
        job = self.active.pop(job_id, None)
        if job is not None:
            self._release(job)
            self.add(job)

    def set_limits(self, limits: SystemSettings) -> None:
        if limits != self.limits:
            self.limits = limits
            self._stale.update(self._by_agent)

    def set_online(self, online: set[str] | None) -> None:
        """The agents that may take work now; those that came or went are looked at again."""
        if online == self._online:
            return
        before = self._online
        self._online = online
        if before is None or online is None:
            self._stale.update(self._by_agent)
            return
        for agent in before ^ online:
            self._stale.add(agent)
            # Its writers reserve their repositories only while it is online.
            for repo, agents in self._repo_agents.items():
                if agents[agent]:
                    self._touch_repo(repo)

    # ------------------------------------------------------------------ deciding

    def round(self, online: set[str] | None, now: float) -> list[str]:
        """Send what may start now (the jobs are taken); returns their ids in queue order."""
        self.set_online(online)
        self._expire_backoffs(now)
        started: list[str] = []
        total = len(self.active)
        if total >= self.limits.max_concurrent_jobs:
            return started
        heap: list[tuple[Key, str]] = []
        for agent in self._by_agent:
            key = self._candidate_of(agent, now)
            if key is not None:
                heap.append((key, agent))
        heapq.heapify(heap)
        while heap and total < self.limits.max_concurrent_jobs:
            key, agent = heapq.heappop(heap)
            if agent in self._stale:  # a start since it was found may have blocked it
                fresh = self._candidate_of(agent, now)
                if fresh is not None:
                    heapq.heappush(heap, (fresh, agent))
                continue
            job_id = key[2]
            self.take(job_id)
            started.append(job_id)
            total += 1
            fresh = self._candidate_of(agent, now)
            if fresh is not None:
                heapq.heappush(heap, (fresh, agent))
        return started

    def reason(self, job_id: str, online: set[str] | None, now: float) -> Waiting | None:
        """Why a queued job waits, as things are (after the last round); None if it does not."""
        job = self.queued.get(job_id)
        if job is None:
            return None
        why = why_blocked(job, self, self.limits, online, now)
        return None if why is None else Waiting(reason=why[0], detail=why[1])

    def position(self, job_id: str) -> int | None:
        """Where a queued job stands: 1 for the next to start, in queue order; None if not queued."""
        job = self.queued.get(job_id)
        return None if job is None else int(self._order.index(queue_key(job))) + 1

    def waiting(self, job_id: str, online: set[str] | None, now: float) -> Waiting | None:
        """Why a queued job waits and where it stands (what the api shows)."""
        why = self.reason(job_id, online, now)
        return None if why is None else msgspec.structs.replace(why, position=self.position(job_id))

    def next_backoff(self) -> float | None:
        """When the next retry's backoff runs out (a round is due then), if any waits."""
        return self._backoffs[0][0] if self._backoffs else None

    def reasons(self, online: set[str] | None, now: float) -> dict[str, Waiting]:
        """Why every queued job waits (tests, and counting for /metrics): O(queue)."""
        out: dict[str, Waiting] = {}
        for job_id in self.queued:
            w = self.reason(job_id, online, now)
            if w is not None:
                out[job_id] = w
        return out

    # ------------------------------------------------------------------ what blocks (domain.Holding)

    @property
    def total(self) -> int:
        return len(self.active)

    def plan_waiter(self, plan_id: str, before: Job) -> Job | None:
        """The first queued backup of the plan, if it is ahead of `before`."""
        backups = self._backups.get(plan_id)
        if not backups:
            return None
        first = backups[0]
        return self.queued[first[2]] if first < queue_key(before) else None

    def reserved_by(self, repo: str, before: Job, online: set[str] | None, now: float) -> Job | None:
        """The first queued writer ahead of `before` that holds the repository, if any."""
        mine = queue_key(before)
        for key in self._writers.get(repo, ()):
            if key >= mine:
                return None
            writer = self.queued[key[2]]
            if reserves(writer, online, now):
                return writer
        return None

    # ------------------------------------------------------------------ inside

    def _candidate_of(self, agent: str, now: float) -> Key | None:
        if agent not in self._stale and agent in self._candidate:
            return self._candidate[agent]
        self._stale.discard(agent)
        key = self._first_startable(agent, now)
        self._candidate[agent] = key
        return key

    def _first_startable(self, agent: str, now: float) -> Key | None:
        online = self._online
        if online is not None and agent not in online:
            return None
        if self.per_agent[agent] >= self.limits.agent_slots:
            return None
        for key in self._by_agent.get(agent, ()):
            job = self.queued[key[2]]
            if self._startable(job, now):
                return key  # type: ignore[no-any-return]
        return None

    def _startable(self, job: Job, now: float) -> bool:
        """Whether nothing but the global limit could hold `job` back (its agent has room)."""
        if backing_off(job, now):
            return False
        if job.plan_id and job.type == "backup" and (job.plan_id in self.backup or self.plan_waiter(job.plan_id, job)):
            return False
        repo = job.repository_id
        if repo and (
            repo in self.writer
            or (job.writes and self.readers[repo])
            or self.reserved_by(repo, job, self._online, now) is not None
        ):
            return False
        if job.job_class:
            limit = class_limit(self.limits, job.job_class)
            if limit is not None and self.per_class[job.job_class] >= limit:
                return False
        return True

    def _unqueue(self, job_id: str) -> Job:
        job = self.queued.pop(job_id)
        key = queue_key(job)
        self._order.remove(key)
        self._drop(self._by_agent, job.agent, key)
        if job.repository_id:
            _decrement(self._repo_agents, job.repository_id, job.agent)
            if job.writes:
                self._drop(self._writers, job.repository_id, key)
                self._touch_repo(job.repository_id)
        if job.plan_id and job.type == "backup":
            self._drop(self._backups, job.plan_id, key)
            self._touch_plan(job.plan_id)
            _decrement(self._plan_agents, job.plan_id, job.agent)
        if job.job_class:
            _decrement(self._class_agents, job.job_class, job.agent)
        self._stale.add(job.agent)
        if job.agent not in self._by_agent:
            self._candidate.pop(job.agent, None)
            self._stale.discard(job.agent)
        return job

    def _hold(self, job: Job) -> None:
        self.per_agent[job.agent] += 1
        self._stale.add(job.agent)
        if job.job_class:
            self.per_class[job.job_class] += 1
            self._touch_class(job.job_class)
        if job.repository_id:
            if job.writes:
                self.writer[job.repository_id] = job
            else:
                self.readers[job.repository_id] += 1
            self._touch_repo(job.repository_id)
        if job.plan_id and job.type == "backup":
            self.backup[job.plan_id] = job
            self._touch_plan(job.plan_id)

    def _release(self, job: Job) -> None:
        self.per_agent[job.agent] -= 1
        if self.per_agent[job.agent] <= 0:
            del self.per_agent[job.agent]
        self._stale.add(job.agent)
        if job.job_class:
            self.per_class[job.job_class] -= 1
            self._touch_class(job.job_class)
        if job.repository_id:
            if job.writes:
                if self.writer.get(job.repository_id) is job:
                    del self.writer[job.repository_id]
            else:
                self.readers[job.repository_id] -= 1
                if self.readers[job.repository_id] <= 0:
                    del self.readers[job.repository_id]
            self._touch_repo(job.repository_id)
        if job.plan_id and job.type == "backup" and self.backup.get(job.plan_id) is job:
            del self.backup[job.plan_id]
            self._touch_plan(job.plan_id)

    def _expire_backoffs(self, now: float) -> None:
        while self._backoffs and self._backoffs[0][0] <= now:
            _, job_id = heapq.heappop(self._backoffs)
            job = self.queued.get(job_id)
            if job is not None:
                self._stale.add(job.agent)
                if job.repository_id and job.writes:
                    self._touch_repo(job.repository_id)  # it reserves its repository from now on

    def _touch_repo(self, repo: str) -> None:
        self._stale.update(self._repo_agents.get(repo, ()))

    def _touch_plan(self, plan: str) -> None:
        self._stale.update(self._plan_agents.get(plan, ()))

    def _touch_class(self, job_class: str) -> None:
        self._stale.update(self._class_agents.get(job_class, ()))

    @staticmethod
    def _drop(index: defaultdict[str, SortedList], name: str, key: Key) -> None:
        keys = index[name]
        keys.remove(key)
        if not keys:
            del index[name]


def _decrement(index: defaultdict[str, Counter[str]], name: str, agent: str) -> None:
    counts = index[name]
    counts[agent] -= 1
    if counts[agent] <= 0:
        del counts[agent]
    if not counts:
        del index[name]


def queue_of(jobs: Iterable[Job], active: Iterable[Job], limits: SystemSettings) -> JobQueue:
    """A JobQueue holding `jobs` queued and `active` running (tests, and a start from a snapshot)."""
    q = JobQueue(limits)
    for job in active:
        q.activate(job)
    for job in jobs:
        q.add(job)
    return q

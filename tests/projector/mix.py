"""A fleet's worth of job histories for projection tests, and appending them as the services do.

Every kind of change the read model takes: backups creating archives (completed, with a
warning, failed), checks failing and retried, sends that time out and are requeued, jobs
cancelled queued and running, prunes and archive deletions removing archives, finished
jobs deleted (their progress purged, as the api does), heartbeats, and a message that
does not decode. Histories of several jobs interleave in the stream, each in its order.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from nats.js import JetStreamContext

from shared import bus
from shared import events as ev
from shared.streams import PROGRESS
from tests.support.events import spec

AGENTS = ("a1", "a2", "a3")
REPOSITORIES = {
    r: ev.RepositoryRef(id=r, name=f"repo-{r}", location=f"/srv/borg/{r}", agent=a)
    for r, a in (("r1", "a1"), ("r2", "a2"))
}


@dataclass(frozen=True)
class Purge:
    """The api, deleting a job, purges its progress from BORGFLOW_PROGRESS."""

    job_id: str


@dataclass(frozen=True)
class Malformed:
    subject: str


Step = ev.Event | Purge | Malformed


def interleave(rng: random.Random, histories: Iterable[list[Step]]) -> list[Step]:
    """The steps of every history, shuffled together, each history's in its own order."""
    pending = [list(reversed(h)) for h in histories if h]
    out: list[Step] = []
    while pending:
        h = rng.choice(pending)
        out.append(h.pop())
        if not h:
            pending.remove(h)
    return out


@dataclass
class Mix:
    """Makes histories, remembering what they leave behind (archives, finished jobs) to act on later."""

    rng: random.Random
    archives: dict[str, list[str]] = field(default_factory=lambda: {r: [] for r in REPOSITORIES})
    removed: list[tuple[str, str]] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    _n: int = 0

    def _spec(self, job_type: str, repo: str | None = None, **kw: object) -> ev.JobSpec:
        if repo is None:
            return spec(job_type, agent=self.rng.choice(AGENTS), **kw)
        ref = REPOSITORIES[repo]
        return spec(job_type, agent=ref.agent, repository_id=repo, repository=ref, **kw)

    def _run(self, s: ev.JobSpec, outcome: ev.Event, progress: int = 0) -> list[Step]:
        j = s.id
        steps: list[Step] = [
            ev.JobQueued(job_id=j, data=s),
            ev.JobSent(job_id=j, data=ev.SentData(agent=s.agent)),
            ev.JobStarted(job_id=j, data=ev.StartedData(agent=s.agent, host=f"{s.agent}.lan", pid=4242)),
        ]
        for i in range(progress):
            done = ev.Progress(percent=100.0 * (i + 1) / (progress + 1), nfiles=10 * (i + 1), current_file=f"/etc/f{i}")
            steps.append(ev.JobProgress(job_id=j, data=done))
        self.finished.append(j)
        return [*steps, outcome]

    def backup(self, repo: str, status: str = "completed") -> list[Step]:
        self._n += 1
        s = self._spec("backup", repo, plan_id=f"plan-{repo}")
        name = f"plan-{repo}-{self._n:04d}"
        if status == "failed":
            err = ev.JobError(kind="source_not_found", message="/srv/data: no such directory", exit_code=2)
            return self._run(s, ev.JobFailed(job_id=s.id, data=ev.OutcomeData(error=err)), progress=1)
        self.archives[repo].append(name)
        result = ev.JobResult(exit_code=0 if status == "completed" else 1, archive=name, stats={"nfiles": self._n})
        outcome = ev.OUTCOME_BY_STATUS[ev.JobStatus(status)](job_id=s.id, data=ev.OutcomeData(result=result))
        return self._run(s, outcome, progress=self.rng.randint(1, 4))

    def check_retried(self, repo: str) -> list[Step]:
        """A check that fails on a lock, then its automatic retry, which completes."""
        first = self._spec("check", repo)
        err = ev.JobError(kind="lock_timeout", message="repository locked", exit_code=73)
        failed = self._run(first, ev.JobFailed(job_id=first.id, data=ev.OutcomeData(error=err)))
        retry = self._spec("check", repo, retry_of=first.id, attempt=2, trigger="retry")
        return failed + self._run(retry, ev.JobCompleted(job_id=retry.id))

    def requeued(self) -> list[Step]:
        """A send its agent did not take in time: back to the queue, sent again, then run."""
        s = self._spec("ping")
        j = s.id
        first_send = ev.JobSent(job_id=j, data=ev.SentData(agent=s.agent))
        requeued = ev.JobRequeued(job_id=j, data=ev.RequeuedData(reason="agent did not take it"))
        queued, *rest = self._run(s, ev.JobCompleted(job_id=j))
        return [queued, first_send, requeued, *rest]

    def cancelled(self, running: bool) -> list[Step]:
        s = self._spec("compact", self.rng.choice(list(REPOSITORIES)))
        j = s.id
        out = ev.JobCancelled(job_id=j, data=ev.OutcomeData(error=ev.JobError(kind="cancelled_by_user", message="no")))
        if not running:
            self.finished.append(j)
            return [ev.JobQueued(job_id=j, data=s), out]
        steps = self._run(s, out, progress=1)
        return [*steps[:-1], ev.JobCancelRequested(job_id=j), out]

    def prune(self, repo: str, n: int) -> list[Step]:
        """A prune that removes the repository's `n` oldest archives."""
        pruned, self.archives[repo] = self.archives[repo][:n], self.archives[repo][n:]
        self.removed += [(repo, name) for name in pruned]
        s = self._spec("prune", repo, options={"keep_daily": 7})
        result = ev.JobResult(exit_code=0, details={"pruned": pruned, "kept": self.archives[repo]})
        return self._run(s, ev.JobCompleted(job_id=s.id, data=ev.OutcomeData(result=result)))

    def delete_archive(self, repo: str) -> list[Step]:
        name = self.archives[repo].pop(self.rng.randrange(len(self.archives[repo])))
        self.removed.append((repo, name))
        s = self._spec("delete_archive", repo, archive=name)
        return self._run(s, ev.JobCompleted(job_id=s.id, data=ev.OutcomeData(result=ev.JobResult(exit_code=0))))

    def delete_finished(self, n: int) -> list[Step]:
        """Delete `n` of the jobs finished so far, as the api does: the event, then a purge of their progress.

        Only jobs of histories made before: make this first when interleaving it with new ones.
        """
        steps: list[Step] = []
        for j in self.rng.sample(self.finished, min(n, len(self.finished))):
            self.finished.remove(j)
            self.deleted.append(j)
            steps += [ev.JobDeleted(job_id=j, data=ev.DeletedData(by="admin")), Purge(j)]
        return steps

    def unfinished(self) -> list[Step]:
        """A job still queued and one still running, with progress."""
        waiting = self._spec("check", "r2")
        running = self._spec("backup", "r1")
        steps = self._run(running, ev.JobCompleted(job_id=running.id), progress=2)[:-1]
        self.finished.remove(running.id)
        return [ev.JobQueued(job_id=waiting.id, data=waiting), *steps]

    def heartbeats(self, n: int) -> list[Step]:
        return [
            ev.AgentHeartbeat(data=ev.HeartbeatData(agent=a, host=f"{a}.lan", borg_version="1.4.0", slots=2))
            for _ in range(n)
            for a in AGENTS
        ]


class Appender:
    """Appends steps as the services would, remembering each projection's last sequence."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js
        self.ends = {"jobs": 0, "progress": 0, "agents": 0}

    async def run(self, steps: Iterable[Step]) -> None:
        for step in steps:
            await self.append(step)

    async def append(self, step: Step) -> None:
        if isinstance(step, Purge):
            await self.js.purge_stream(PROGRESS, subject=f"borgflow.progress.{step.job_id}")
            return
        if isinstance(step, Malformed):
            self.ends["jobs"] = int((await self.js.publish(step.subject, b"{not json")).seq)
            return
        ack = await bus.publish(self.js, step)
        name = (
            "progress"
            if isinstance(step, ev.JobProgress)
            else "agents"
            if isinstance(step, ev.AgentHeartbeat)
            else "jobs"
        )
        self.ends[name] = int(ack.seq)

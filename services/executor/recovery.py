"""Reconciliation on start: the jobs a previous run of this executor left running.

An executor that dies (SIGKILL, OOM, a power cut) leaves jobs `running` on the stream that
nobody will end, and perhaps a borg that still runs, or the lock of one that does not.
Before it takes new jobs, a starting executor looks at every job

- recorded in its state file (records.py: the job, its repository, the pid and start
  time of the process it ran), and
- named `running` in this agent's last heartbeat (a job the file lacks, say a lost disk),

and for each:

1. stops a process of it that still runs (the executor died, borg did not): SIGINT,
   SIGTERM, SIGKILL, the cancel grace period apart. A pid whose start time differs was
   reused by an unrelated process: that one is left alone, and ours counts as gone;
2. breaks the stale lock its borg left on a local repository, once no borg of ours runs
   on it and no live process holds the lock. A remote repository's lock is never broken
   automatically: `borg serve` on the server may still hold it (a hint says how);
3. ends the job on the stream, by compare-and-set: with the outcome the previous run had
   decided but not yet published, if any, else `failed` as `executor_restarted` (a
   transient kind: the plan's automatic retry takes it from there).

A job sent to this agent but never claimed is left to the durable consumer, which
redelivers its `sent` and claims it as usual. A job whose claimer is a live executor
(two executors configured with one agent name) is left alone, loudly.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import msgspec
from nats.js.errors import NotFoundError

from services.executor import cleanup, commands, processes, transitions
from services.executor.outcomes import HintContext, hint_for
from services.executor.records import RunningJob
from services.executor.runner import RunContext
from shared import bus
from shared.config import default_data_dir
from shared.events import (
    AgentHeartbeat,
    JobError,
    JobFailed,
    JobLog,
    JobResult,
    JobStatus,
    LogData,
    LogLine,
    OutcomeData,
    Progress,
    decode,
    utcnow,
)
from shared.jobs import JobView, labels_of
from shared.streams import AGENTS
from shared.version import VERSION

log = logging.getLogger(__name__)

# A job whose settling keeps failing while NATS is up (not a NATS outage: a bug, a
# broken stream) is given up after this many tries; its record stays for the next start.
MAX_FAILURES = 10
HEARTBEAT_READ_TRIES = 5


class _Notes:
    """What recovery did for one job, for that job's log (an Output for cleanup)."""

    def __init__(self) -> None:
        self.lines: list[LogLine] = []

    def line(self, message: str, *, level: str = "info", source: str = "executor") -> None:
        self.lines.append(LogLine(at=utcnow(), level=level, message=message, source=source))

    def say(self, message: str) -> None:
        self.line(message)

    def progress(self, progress: Progress) -> None:
        pass


class Leftover(msgspec.Struct, kw_only=True):
    """One job the previous run left: what became of its process, and the log lines saying so."""

    job_id: str
    record: RunningJob | None = None
    what_happened: str = "no record of its processes was left"
    remote_lock: str | None = None
    """A remote repository whose lock a borg of this job may have left (never broken automatically)."""


class Recovery:
    """The previous run's jobs, until each is settled; then this executor takes new ones."""

    def __init__(self, ctx: RunContext, previous: dict[str, RunningJob]) -> None:
        self.ctx = ctx
        self.agent = ctx.settings.agent
        self.previous = previous
        self.pending: set[str] = set()
        """Jobs still to settle: the heartbeat keeps naming them until they are."""
        self._notes: dict[str, _Notes] = {}
        self._leftovers: dict[str, Leftover] = {}

    async def gather(self) -> None:
        """Which jobs to look at. Before the first heartbeat of this run, which replaces the last one."""
        listed = await self._last_heartbeat_running()
        self.pending = set(self.previous) | set(listed)
        if self.pending:
            log.info(
                "jobs left by the previous run",
                extra={"agent": self.agent, "recorded": sorted(self.previous), "heartbeat": sorted(listed)},
            )

    async def run(self) -> None:
        """Settle every pending job: local work first (needs no NATS), then the stream."""
        if not self.pending:
            return
        for job_id in sorted(self.pending):
            record = self.previous.get(job_id)
            if record is not None and self._held_by_another_executor(record):
                self.pending.discard(job_id)
                continue
            self._leftovers[job_id] = await self._stop_leftover(job_id, record)
        await self._break_stale_locks()
        for job_id in sorted(self.pending):
            await self._settle_with_retries(self._leftovers[job_id])
            self.pending.discard(job_id)
        log.info("reconciled the previous run's jobs", extra={"agent": self.agent})

    async def settle_orphan(self, job_id: str) -> None:
        """A job a previous run claimed, met again through a redelivered `sent`: end it."""
        await self.settle(Leftover(job_id=job_id))

    # ------------------------------------------------------------------ steps

    def _held_by_another_executor(self, record: RunningJob) -> bool:
        if record.executor_pid == os.getpid() or not processes.alive(record.executor_pid, record.executor_started_at):
            return False
        log.error(
            "a live executor (pid %d) holds job %s: two executors share agent %s and its data dir; left alone",
            record.executor_pid,
            record.job_id,
            self.agent,
            extra={"job_id": record.job_id},
        )
        return True

    async def _stop_leftover(self, job_id: str, record: RunningJob | None) -> Leftover:
        notes = self._notes.setdefault(job_id, _Notes())
        leftover = Leftover(job_id=job_id, record=record)
        if record is None:
            return leftover
        if record.outcome is not None and record.type == "update_agent":
            return leftover  # it ended and asked for this restart: nothing of it runs
        proc = record.process
        if proc is None:
            leftover.what_happened = "it had not started borg yet"
        elif processes.alive(proc.pid, proc.started_at):
            assert proc.started_at is not None  # alive() holds only with a start time
            notes.line(f"the executor restarted while {proc.what} (pid {proc.pid}) ran: stopping it", level="warning")
            log.warning("stopping a process the previous run left", extra={"job_id": job_id, "pid": proc.pid})
            sent = await processes.stop_group(proc.pid, proc.started_at, self.ctx.options.cancel_grace_s, notes.say)
            leftover.what_happened = f"{proc.what} (pid {proc.pid}) was still running and was stopped" + (
                f" with {sent}" if sent else ""
            )
        else:
            reused = processes.started_at(proc.pid) is not None
            leftover.what_happened = f"{proc.what} (pid {proc.pid}) was no longer running" + (
                " (its pid now belongs to another process, which was left alone)" if reused else ""
            )
        notes.line(f"the executor restarted while the job ran: {leftover.what_happened}")
        if proc is not None and proc.what == "borg" and record.location and not commands.is_local(record.location):
            leftover.remote_lock = record.location
        return leftover

    async def _break_stale_locks(self) -> None:
        """Repositories a dead borg of ours may have left locked: a local one is unlocked once nothing of ours
        runs on it (and no live process holds the lock); a remote one's lock is left alone, with a hint."""
        by_location: dict[str, list[Leftover]] = {}
        for leftover in self._leftovers.values():
            record = leftover.record
            if record is None or record.process is None or record.process.what != "borg" or not record.location:
                continue
            # A remote one is only named in the job's log: its lock is never broken here.
            by_location.setdefault(record.location, []).append(leftover)
        if not by_location:
            return
        data_dir = Path(self.ctx.settings.data_dir or default_data_dir())
        # break-lock needs no key, hence no passphrase: the api need not be up for this.
        env = commands.borg_environment(self.ctx.environ, data_dir=data_dir, passphrase=None)
        await asyncio.to_thread(Path(env["BORG_BASE_DIR"]).mkdir, parents=True, exist_ok=True)
        for location, leftovers in sorted(by_location.items()):
            notes = self._notes[leftovers[0].job_id]
            if self._ours_still_running(location):
                notes.line(f"a borg of ours still runs on {location}: its lock is not broken", level="warning")
                continue
            await cleanup.break_lock(self.ctx.borg, location, env, notes, why="the executor restarted while borg ran")

    def _ours_still_running(self, location: str) -> bool:
        for record in self.previous.values():
            proc = record.process
            if record.location == location and proc is not None and processes.alive(proc.pid, proc.started_at):
                return True
        return False

    async def _settle_with_retries(self, leftover: Leftover) -> None:
        failures = 0
        delay = 0.5
        while True:
            try:
                await self.settle(leftover)
                return
            except Exception as e:
                if self.ctx.connected():
                    failures += 1
                if failures >= MAX_FAILURES:
                    log.exception(
                        "giving up on settling a job left by the previous run", extra={"job_id": leftover.job_id}
                    )
                    return
                log.warning(
                    "settling a job left by the previous run failed, retrying: %s", e, extra={"job_id": leftover.job_id}
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def settle(self, leftover: Leftover) -> None:
        """End the job on the stream if it still runs on this agent; then forget its record."""
        job_id = leftover.job_id
        extra = {"job_id": job_id, "agent": self.agent}
        view, tail = await bus.load_for_update(self.ctx.js, job_id)
        if view is None or view.status != JobStatus.RUNNING or view.agent != self.agent:
            # Ended meanwhile (agent_lost, say), or never claimed: a sent job is claimed as
            # usual when the durable consumer redelivers it.
            status = view.status.value if view else "absent"
            log.info("nothing to settle", extra=extra | {"status": status})
            await self.ctx.records.forget(job_id)
            return
        if view.pid is not None and view.pid != os.getpid() and processes.alive(view.pid, view.pid_started_at):
            log.error(
                "job runs under another live executor (pid %d) of agent %s: left alone",
                view.pid,
                self.agent,
                extra=extra,
            )
            return
        record = leftover.record
        notes = self._notes.setdefault(job_id, _Notes())
        if record is not None and record.outcome is not None:
            # The previous run had decided the outcome but not published it: that is the truth.
            event = record.outcome
            if record.type == "update_agent":
                notes.line(f"the executor restarted as borgflow {VERSION}, which this job installed")
            else:
                notes.line("the executor restarted before it could publish the outcome: publishing it now")
        else:
            event = self._failure(leftover, view)
        await self._publish_notes(job_id, notes)
        landed = await transitions.finish(self.ctx.js, event, tail, connected=self.ctx.connected)
        await self.ctx.records.forget(job_id)
        log.warning("settled a job left by the previous run", extra=extra | {"ended": event.type, "landed": landed})

    def _failure(self, leftover: Leftover, view: JobView) -> JobFailed:
        job_type = view.type
        record = leftover.record
        location = record.location if record is not None and record.location else ""
        hints = HintContext(location=location, agent=self.agent)
        hint = hint_for("executor_restarted", hints)
        if leftover.remote_lock:
            hint += (
                f". borg on the server of {leftover.remote_lock} may still hold its lock, which is never broken "
                f"automatically: if no borg runs on it any more, run `borg break-lock {leftover.remote_lock}`"
            )
        message = f"the executor on agent {self.agent} restarted while the job ran: {leftover.what_happened}"
        archive = record.archive if record is not None and job_type == "backup" else None
        return JobFailed(
            job_id=leftover.job_id,
            data=OutcomeData(
                # A backup names the archive it was writing: its retry looks for it first.
                result=JobResult(archive=archive) if archive else None,
                error=JobError(kind="executor_restarted", message=message, hint=hint),
                job=labels_of(view),
            ),
        )

    async def _publish_notes(self, job_id: str, notes: _Notes) -> None:
        if not notes.lines:
            return
        try:
            await bus.publish(self.ctx.js, JobLog(job_id=job_id, data=LogData(lines=notes.lines)))
        except Exception as e:  # best effort, as every log line
            log.warning("could not publish the recovery log lines: %s", e, extra={"job_id": job_id})
        notes.lines = []

    async def _last_heartbeat_running(self) -> list[str]:
        """The jobs this agent's last heartbeat (the previous run's) said it ran."""
        subject = f"borgflow.agents.{self.agent}.heartbeat"
        for attempt in range(1, HEARTBEAT_READ_TRIES + 1):
            try:
                msg = await self.ctx.js.get_last_msg(AGENTS, subject)
            except NotFoundError:
                return []  # no heartbeat yet (or no stream): a first start
            except Exception as e:
                log.warning("cannot read the last heartbeat yet: %s", e, extra={"agent": self.agent})
                await asyncio.sleep(0.2 * attempt)
                continue
            try:
                event = decode(msg.data or b"")
            except msgspec.MsgspecError:
                return []
            if not isinstance(event, AgentHeartbeat):
                return []
            return list(event.data.running)
        log.warning("could not read the last heartbeat: only the state file tells the previous run's jobs")
        return []

"""The interface between the runner and a job type that is not plain borg.

`Plugin` is what a type implements; `PluginJob` is everything the runner hands it;
`CommandPlugin` is the common case (one command, its lines read for progress, its
exit classified) so that a new type is one small module. See the package docstring.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Generic, Protocol, TypeVar

import msgspec

from services.executor import commands, endings, hooks
from services.executor.borgproc import Output, Tracker
from services.executor.endings import CancelRequest, Ending
from services.executor.exceptions import BadJob
from services.executor.hostinfo import HostFacts
from services.executor.jobs.process import OnLine, ProcessExit, ProcessUnavailable, run_process
from services.executor.outcomes import HintContext, hint_for
from services.executor.secrets import JobSecrets
from shared.events import JobResult, JobSpec, JobStatus, Progress


class Plugin(Protocol):
    """A job type the runner hands over whole: it runs the job and says how it ended.

    `run` must answer the cancel signal (`job.cancel`), and should return rather than
    raise: an exception still ends the job, but as `internal`.
    """

    types: ClassVar[frozenset[str]]
    """The job types (JobSpec.type) it serves."""
    wants_passphrase: ClassVar[bool]
    """Whether the runner should fetch the repository passphrase first (only when the job has a repository)."""

    async def run(self, job: PluginJob) -> Ending: ...


@dataclass(frozen=True)
class PluginJob:
    """One job as a plug-in sees it: its spec, where to write, what to stop on, what to run with."""

    spec: JobSpec
    output: Output
    cancel: asyncio.Event
    """Set when the job is to stop (a user's cancel, a stall, the executor shutting down)."""
    cancel_request: Callable[[], CancelRequest]
    """Why it is to stop (meaningful once `cancel` is set)."""
    data_dir: Path
    environ: Mapping[str, str]
    """The executor's own environment, to read configuration from (BORGFLOW_*). Never hand
    it to a child process: it holds the agent's token. `child_environment()` is for that."""
    facts: HostFacts
    hints: HintContext
    borg: str
    """The borg executable the executor runs."""
    grace_s: float
    """On a cancel, how long a process gets after each of SIGINT and SIGTERM."""
    passphrase: str | None = None
    """The repository passphrase, fetched only for a plug-in that `wants_passphrase`."""
    tracker: Tracker | None = None
    secrets: Callable[[], Awaitable[JobSecrets]] | None = None
    """Fetches the job's secrets from the api when called (a restore's target password, a plan's
    database passwords): only what needs them asks, and only as it needs them."""
    borg_changed: Callable[[], Awaitable[str | None]] | None = None
    """Tells the executor that its borg was switched (update_borg), so that its heartbeats and
    started events say the new version; answers that version."""

    @property
    def agent(self) -> str:
        return self.facts.agent

    @property
    def cancelled(self) -> bool:
        return self.cancel.is_set()

    def line(self, text: str, level: str = "info", source: str = "executor") -> None:
        """A line in the job's log."""
        self.output.line(text, level=level, source=source)

    def progress(self, progress: Progress) -> None:
        """The job's progress now (published at most every progress interval, the last always)."""
        self.output.progress(progress)

    def child_environment(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """What a child process runs with: the executor's environment without secrets, plus the job's context."""
        return hooks.hook_environment(self.environ, self.spec, self.agent) | dict(extra or {})

    def borg_environment(self) -> dict[str, str]:
        """What borg runs with (as the runner's borg jobs): holds the passphrase, so for borg only."""
        return commands.borg_environment(self.environ, data_dir=self.data_dir, passphrase=self.passphrase)

    async def run(
        self,
        argv: Sequence[str],
        on_line: OnLine,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        what: str = "process",
    ) -> ProcessExit:
        """Run a process to its end, each output line to `on_line`, stopped cleanly on a cancel.

        `env` defaults to `child_environment()`. ProcessUnavailable when it cannot start.
        """
        return await run_process(
            argv,
            on_line,
            env=self.child_environment() if env is None else env,
            out=self.output,
            cancel=self.cancel,
            cancel_reason=lambda: self.cancel_request().describe(),
            grace_s=self.grace_s,
            cwd=cwd,
            what=what,
            tracker=self.tracker,
        )

    def failed(self, kind: str, message: str, hint: str | None = None, exit_code: int | None = None) -> Ending:
        """A failed ending (logged too); the hint defaults to the executor's hint for `kind`."""
        self.line(message, level="error")
        return endings.failed(kind, message, hint if hint is not None else hint_for(kind, self.hints), exit_code)

    def stopped(self, what: str, exit_code: int | None = None) -> Ending:
        """How a job stopped by its cancel ends: cancelled, or (the executor stopping) failed to be retried."""
        request = self.cancel_request()
        if request.shutdown:
            ended = "before it started" if exit_code is None else f"while {what} ran (it exited with {exit_code})"
            return endings.failed(
                "executor_restarted",
                f"the executor on agent {self.agent} stopped {ended}",
                hint_for("executor_restarted", self.hints),
                exit_code=exit_code,
            )
        ended = f"before {what} started" if exit_code is None else f": {what} stopped with exit code {exit_code}"
        joiner = " " if exit_code is None else ""
        return endings.cancelled(request, f"{request.describe()}{joiner}{ended}", self.hints, exit_code=exit_code)


class Command(msgspec.Struct, frozen=True, kw_only=True):
    """One process to run for a job."""

    argv: list[str]
    env: dict[str, str] | None = None
    """None: the job's child environment."""
    cwd: str | None = None
    summary: str | None = None
    """The command as the job log shows it (default: argv joined); must hold no secret."""


S = TypeVar("S")


class CommandPlugin(ABC, Generic[S]):
    """The common case: build one command, read each of its lines (log and progress) into a
    state of the type's own, and classify the outcome from the exit code and that state.

    A subclass sets `types` and `what`, and writes `command`, `start`, `read` and `outcome`;
    `unavailable` when the program's absence deserves its own kind.
    """

    types: ClassVar[frozenset[str]]
    wants_passphrase: ClassVar[bool] = False
    what: ClassVar[str] = "process"
    """The program's name in the job log and the executor's records (rclone, apt-get)."""

    @abstractmethod
    def command(self, job: PluginJob) -> Command:
        """The command to run; BadJob (kind, message, hint) when the job cannot be turned into one."""

    @abstractmethod
    def start(self, job: PluginJob) -> S:
        """A fresh reading state for one run."""

    @abstractmethod
    def read(self, job: PluginJob, state: S, text: str, stream: str) -> None:
        """One output line: log it (`job.line`), move the progress (`job.progress`), note what the outcome needs."""

    @abstractmethod
    def outcome(self, job: PluginJob, done: ProcessExit, state: S) -> Ending:
        """How the job ended, from the exit code and what was read (a run we did not stop)."""

    def unavailable(self, job: PluginJob, error: ProcessUnavailable) -> Ending:
        """The program could not be started."""
        return job.failed(
            "internal", str(error), f"Install {self.what} on agent {job.agent}, or fix the path the executor runs"
        )

    async def run(self, job: PluginJob) -> Ending:
        try:
            cmd = self.command(job)
        except BadJob as e:
            return job.failed(e.kind, e.message, e.hint or None)
        if job.cancelled:
            return job.stopped(self.what)
        job.line(f"starting {cmd.summary or ' '.join(cmd.argv)}" + (f" in {cmd.cwd}" if cmd.cwd else ""))
        state = self.start(job)
        try:
            done = await job.run(
                cmd.argv,
                lambda text, stream: self.read(job, state, text, stream),
                env=cmd.env,
                cwd=cmd.cwd,
                what=self.what,
            )
        except ProcessUnavailable as e:
            return self.unavailable(job, e)
        job.line(f"{self.what} exited with {done.code} after {done.elapsed_s:.1f}s")
        if done.signalled and done.code != 0:
            return job.stopped(self.what, done.code)
        return self.outcome(job, done, state)


def completed(details: dict[str, object] | None = None, exit_code: int | None = 0) -> Ending:
    """A completed ending with the type's own details."""
    return Ending(status=JobStatus.COMPLETED, result=JobResult(exit_code=exit_code, details=dict(details or {})))

"""Running a borg process: start it in its own session, read its stderr line by line as it
comes, and stop it on a cancel with an escalation (SIGINT, then SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Protocol

import msgspec

from services.executor import spans
from services.executor.collect import OutputCollector
from services.executor.commands import Invocation
from services.executor.exceptions import ExecutorError
from services.executor.outcomes import exit_code_of
from services.executor.parse import LogEntry, parse_line
from shared.events import Progress

# Longest stderr line kept (asyncio's default limit is 64 KiB; tracebacks can be longer).
STREAM_LIMIT = 1 << 20
# After borg exits, how long a child that inherited its pipes (ssh) may keep them open.
DRAIN_TIMEOUT_S = 5.0


class Output(Protocol):
    """Where a run's log lines and progress go (the job's batcher and reporter)."""

    def line(self, message: str, *, level: str = "info", source: str = "borg") -> None: ...

    def progress(self, progress: Progress) -> None: ...


class Tracker(Protocol):
    """Told of every process a job starts, so that a restarted executor can find it."""

    async def spawned(self, pid: int, what: str) -> None: ...


class BorgUnavailable(ExecutorError):
    """borg could not be started at all (missing, not executable, bad working directory)."""


class BorgExit(msgspec.Struct, frozen=True, kw_only=True):
    code: int
    """borg's exit code; killed by signal N reads as 128+N."""
    stdout: bytes
    elapsed_s: float
    signalled: bool = False
    """A cancel made us signal borg."""
    killed: bool = False
    """borg ignored SIGINT and SIGTERM and had to be SIGKILLed (its lock stays behind)."""


async def spawn(argv: Sequence[str], env: dict[str, str], cwd: str | None = None) -> asyncio.subprocess.Process:
    try:
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=cwd,
            # Its own session: a Ctrl-C meant for the executor does not reach borg,
            # and a cancel can signal borg and the ssh it started as one group.
            start_new_session=True,
            limit=STREAM_LIMIT,
        )
    except OSError as e:
        raise BorgUnavailable(f"cannot run borg ({argv[0]}): {e.strerror or e}") from e


def signal_group(proc: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    # start_new_session made the process a group leader: its pgid is its pid.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


async def run_borg(
    invocation: Invocation,
    env: dict[str, str],
    collector: OutputCollector,
    out: Output,
    *,
    cancel: asyncio.Event,
    cancel_reason: Callable[[], str],
    grace_s: float,
    tracker: Tracker | None = None,
) -> BorgExit:
    """Run borg to its end; a set `cancel` stops it. BorgUnavailable when it cannot start."""
    command = spans.borg_command(invocation.argv)
    with spans.process_span(command) as span:
        done = await _run_borg(
            invocation,
            env,
            collector,
            out,
            cancel=cancel,
            cancel_reason=cancel_reason,
            grace_s=grace_s,
            tracker=tracker,
        )
        spans.ended(span, command, done.code)
        return done


async def _run_borg(
    invocation: Invocation,
    env: dict[str, str],
    collector: OutputCollector,
    out: Output,
    *,
    cancel: asyncio.Event,
    cancel_reason: Callable[[], str],
    grace_s: float,
    tracker: Tracker | None,
) -> BorgExit:
    started = time.monotonic()
    proc = await spawn(invocation.argv, env, invocation.cwd)
    out.line(f"borg started with pid {proc.pid}", source="executor")
    if proc.stdout is None or proc.stderr is None:  # cannot happen: both are PIPEs
        raise RuntimeError("borg started without pipes")
    stop = Stopper(proc, out, cancel, cancel_reason, grace_s)
    stdout_task = asyncio.create_task(proc.stdout.read())
    stderr_task = asyncio.create_task(_read_stderr(proc.stderr, collector, out, started))
    stopper = asyncio.create_task(stop.run())
    try:
        if tracker is not None:
            await tracker.spawned(proc.pid, "borg")
        returncode = await proc.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(stdout_task, stderr_task), DRAIN_TIMEOUT_S)
    finally:
        stopper.cancel()
        if proc.returncode is None:  # we are being cancelled: never leave borg behind
            signal_group(proc, signal.SIGKILL)
            await proc.wait()
        for task in (stdout_task, stderr_task):
            task.cancel()
    stdout = stdout_task.result() if stdout_task.done() and not stdout_task.cancelled() else b""
    code = exit_code_of(returncode)
    for line in collector.finish(code):
        out.line(line.message, level=line.level)
    return BorgExit(
        code=code,
        stdout=stdout,
        elapsed_s=time.monotonic() - started,
        signalled=stop.signalled,
        killed=stop.killed,
    )


async def _read_stderr(stream: asyncio.StreamReader, collector: OutputCollector, out: Output, started: float) -> None:
    while True:
        try:
            raw = await stream.readline()
        except ValueError:  # longer than STREAM_LIMIT: asyncio has already dropped it
            out.line(f"borg wrote a line longer than {STREAM_LIMIT} bytes; it was dropped", source="executor")
            continue
        if not raw:
            return
        fed = collector.feed(raw.decode(errors="replace"), time.monotonic() - started)
        for line in fed.log:
            out.line(line.message, level=line.level)
        if fed.progress is not None:
            out.progress(fed.progress)


async def text_lines(stream: asyncio.StreamReader, on_dropped: Callable[[], None] | None = None) -> AsyncIterator[str]:
    """Each line a child writes, decoded, without its line ending; blank ones skipped.

    A line longer than STREAM_LIMIT has already been dropped by asyncio: `on_dropped` is told.
    """
    while True:
        try:
            raw = await stream.readline()
        except ValueError:
            if on_dropped is not None:
                on_dropped()
            continue
        if not raw:
            return
        text = raw.decode(errors="replace").rstrip("\r\n")
        if text.strip():
            yield text


class Stopper:
    """SIGINT (borg writes a checkpoint and stops; most tools stop cleanly), then SIGTERM,
    then SIGKILL, `grace_s` apart, once `cancel` is set. The plug-ins' processes use it too."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        out: Output,
        cancel: asyncio.Event,
        reason: Callable[[], str],
        grace_s: float,
        what: str = "borg",
    ) -> None:
        self.proc = proc
        self.out = out
        self.what = what
        self.cancel = cancel
        self.reason = reason
        self.grace_s = grace_s
        self.signalled = False
        self.killed = False

    async def run(self) -> None:
        await self.cancel.wait()
        self.signalled = True
        reason = self.reason()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            self.out.line(f"{reason}: sending {sig.name} to {self.what}", source="executor")
            if sig == signal.SIGKILL:
                self.killed = True
            signal_group(self.proc, sig)
            if sig == signal.SIGKILL:
                return
            try:
                await asyncio.wait_for(self.proc.wait(), self.grace_s)
                return
            except TimeoutError:
                self.out.line(f"{self.what} still running {self.grace_s:g}s after {sig.name}", source="executor")


class Captured(msgspec.Struct, frozen=True, kw_only=True):
    """A short housekeeping borg run: its exit code, stdout, and what it logged."""

    code: int
    stdout: str
    entries: list[LogEntry]


async def run_captured(
    argv: Sequence[str], env: dict[str, str], timeout_s: float, tracker: Tracker | None = None
) -> Captured:
    """Run a short borg command to its end (killed after `timeout_s`); BorgUnavailable if it cannot start."""
    command = spans.borg_command(argv)
    with spans.process_span(command) as span:
        done = await _run_captured(argv, env, timeout_s, tracker)
        spans.ended(span, command, done.code)
        return done


async def _run_captured(
    argv: Sequence[str], env: dict[str, str], timeout_s: float, tracker: Tracker | None
) -> Captured:
    proc = await spawn(argv, env)
    try:
        if tracker is not None:
            await tracker.spawned(proc.pid, "borg")
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        signal_group(proc, signal.SIGKILL)
        out, err = await proc.communicate()
    finally:
        if proc.returncode is None:  # cancelled: never leave borg behind
            signal_group(proc, signal.SIGKILL)
            await proc.wait()
    entries = [item for raw in err.decode(errors="replace").splitlines() for item in parse_line(raw)]
    return Captured(
        code=exit_code_of(proc.returncode or 0),
        stdout=out.decode(errors="replace"),
        entries=[e for e in entries if isinstance(e, LogEntry)],
    )

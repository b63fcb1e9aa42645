"""Running one process for a plug-in: an argument list (never a shell string) in its own
session, every output line handed to a callback as it comes, stopped on a cancel with
borg's escalation (SIGINT, then SIGTERM, then SIGKILL, `grace_s` apart).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence

import msgspec

from services.executor import spans
from services.executor.borgproc import STREAM_LIMIT, Output, Stopper, Tracker, signal_group, text_lines
from services.executor.exceptions import ExecutorError
from services.executor.outcomes import exit_code_of

# After the process exits, how long a child that inherited its pipes may keep them open.
DRAIN_TIMEOUT_S = 5.0

OnLine = Callable[[str, str], None]
"""Called with each output line (without its line end) and the stream it came on ("stdout", "stderr")."""


class ProcessUnavailable(ExecutorError):
    """The process could not be started at all (missing, not executable, bad working directory)."""

    def __init__(self, program: str, reason: str) -> None:
        super().__init__(f"cannot run {program}: {reason}")
        self.program = program
        self.reason = reason


class ProcessExit(msgspec.Struct, frozen=True, kw_only=True):
    code: int
    """Its exit code; killed by signal N reads as 128+N (as borg's codes and shells have it)."""
    elapsed_s: float
    signalled: bool = False
    """A cancel made us signal it."""
    killed: bool = False
    """It ignored SIGINT and SIGTERM and had to be SIGKILLed."""


async def run_process(
    argv: Sequence[str],
    on_line: OnLine,
    *,
    env: Mapping[str, str],
    out: Output,
    cancel: asyncio.Event,
    cancel_reason: Callable[[], str],
    grace_s: float,
    cwd: str | None = None,
    what: str = "process",
    tracker: Tracker | None = None,
) -> ProcessExit:
    """Run `argv` to its end; a set `cancel` stops it. ProcessUnavailable when it cannot start."""
    if not argv:
        raise ProcessUnavailable("(nothing)", "empty command")
    name = os.path.basename(argv[0]) or what  # the program's name only: arguments may hold paths
    with spans.process_span(name) as span:
        done = await _run(argv, on_line, env, out, cancel, cancel_reason, grace_s, cwd, what, tracker)
        spans.ended(span, name, done.code)
        return done


async def _run(
    argv: Sequence[str],
    on_line: OnLine,
    env: Mapping[str, str],
    out: Output,
    cancel: asyncio.Event,
    cancel_reason: Callable[[], str],
    grace_s: float,
    cwd: str | None,
    what: str,
    tracker: Tracker | None,
) -> ProcessExit:
    started = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(env),
            cwd=cwd,
            # Its own session: a Ctrl-C meant for the executor does not reach it, and a
            # cancel signals it and whatever it started as one group.
            start_new_session=True,
            limit=STREAM_LIMIT,
        )
    except OSError as e:
        raise ProcessUnavailable(argv[0], e.strerror or str(e)) from e
    if proc.stdout is None or proc.stderr is None:  # cannot happen: both are PIPEs
        raise RuntimeError(f"{what} started without pipes")
    out.line(f"{what} started with pid {proc.pid}", source="executor")
    stopper = Stopper(proc, out, cancel, cancel_reason, grace_s, what)
    readers = [
        asyncio.create_task(_pump(proc.stdout, "stdout", on_line, out)),
        asyncio.create_task(_pump(proc.stderr, "stderr", on_line, out)),
    ]
    stopping = asyncio.create_task(stopper.run())
    try:
        if tracker is not None:
            await tracker.spawned(proc.pid, what)
        returncode = await proc.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*readers), DRAIN_TIMEOUT_S)
    finally:
        stopping.cancel()
        if proc.returncode is None:  # we are being cancelled ourselves: leave nothing behind
            signal_group(proc, signal.SIGKILL)
            await proc.wait()
        for task in readers:
            task.cancel()
    return ProcessExit(
        code=exit_code_of(returncode),
        elapsed_s=time.monotonic() - started,
        signalled=stopper.signalled,
        killed=stopper.killed,
    )


async def _pump(stream: asyncio.StreamReader, name: str, on_line: OnLine, out: Output) -> None:
    def dropped() -> None:
        out.line(f"a line longer than {STREAM_LIMIT} bytes on {name} was dropped", source="executor")

    async for text in text_lines(stream, dropped):
        on_line(text, name)

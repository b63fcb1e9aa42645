"""A plan's pre- and post-scripts: each command line split with shlex into an argument
list (no shell), run on the agent with a timeout and the job's context in its
environment, its output streamed into the job's log.

A script gets the executor's environment minus every secret (the agent token, any
BORG_PASSPHRASE the operator set) plus BORGFLOW_* variables that say which job it runs
for. The repository passphrase is never in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import signal
from collections.abc import Mapping

import msgspec

from services.executor import spans
from services.executor.borgproc import STREAM_LIMIT, Output, Tracker, signal_group, text_lines
from services.executor.outcomes import exit_code_of
from shared.events import JobSpec

# After SIGTERM, how long a script (and what it started) may take to exit before SIGKILL.
KILL_GRACE_S = 2.0
# Never handed to a script: secrets, and the executor's own configuration (which holds
# its token and database URL); the BORGFLOW_* a script gets are set fresh per job.
_WITHHELD = ("BORG_PASSPHRASE", "BORG_PASSPHRASE_FD", "BORG_PASSCOMMAND", "BORG_NEW_PASSPHRASE")
_WITHHELD_PREFIXES = ("BORGFLOW_",)


class HookResult(msgspec.Struct, frozen=True, kw_only=True):
    command: str
    ok: bool
    exit_code: int | None = None
    problem: str = ""
    """Why it failed, in words: "exited with 3", "timed out after 300s", "could not start: ..."."""
    cancelled: bool = False


def hook_environment(
    inherited: Mapping[str, str],
    spec: JobSpec,
    agent: str,
    *,
    archive: str | None = None,
    status: str | None = None,
    exit_code: int | None = None,
) -> dict[str, str]:
    """What a script runs with: the executor's environment without secrets, plus the job's context."""
    env = {
        key: value
        for key, value in inherited.items()
        if key not in _WITHHELD and not key.startswith(_WITHHELD_PREFIXES)
    }
    repo = spec.repository
    env |= {
        "BORGFLOW_JOB_ID": spec.id,
        "BORGFLOW_JOB_TYPE": spec.type,
        "BORGFLOW_AGENT": agent,
        "BORGFLOW_REPOSITORY": repo.location if repo else "",
        "BORGFLOW_REPOSITORY_NAME": repo.name if repo else "",
        "BORGFLOW_PLAN": spec.plan.name if spec.plan else "",
    }
    if archive:
        env["BORGFLOW_ARCHIVE"] = archive
    if status is not None:
        env["BORGFLOW_STATUS"] = status
        env["BORGFLOW_EXIT_CODE"] = "" if exit_code is None else str(exit_code)
    return env


async def run_hook(
    command: str,
    env: dict[str, str],
    out: Output,
    *,
    timeout_s: float,
    cancel: asyncio.Event | None = None,
    tracker: Tracker | None = None,
) -> HookResult:
    """Run one script to its end, its timeout, or a set `cancel` (then it is stopped)."""
    try:
        argv = shlex.split(command)
    except ValueError as e:
        return HookResult(command=command, ok=False, problem=f"cannot be split into arguments: {e}")
    if not argv:
        return HookResult(command=command, ok=False, problem="is empty")
    name = spans.script_command(argv)
    with spans.process_span(name) as span:
        result = await _run_hook(command, argv, env, out, timeout_s=timeout_s, cancel=cancel, tracker=tracker)
        spans.ended(span, name, result.exit_code)
        return result


async def _run_hook(
    command: str,
    argv: list[str],
    env: dict[str, str],
    out: Output,
    *,
    timeout_s: float,
    cancel: asyncio.Event | None,
    tracker: Tracker | None,
) -> HookResult:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            # Its own process group, so a timeout or cancel stops what it started too.
            start_new_session=True,
            limit=STREAM_LIMIT,
        )
    except OSError as e:
        return HookResult(command=command, ok=False, problem=f"could not start: {e.strerror or e}")
    if proc.stdout is None or proc.stderr is None:  # cannot happen: both are PIPEs
        raise RuntimeError("script started without pipes")
    readers = [
        asyncio.create_task(_pump(proc.stdout, out, "info")),
        asyncio.create_task(_pump(proc.stderr, out, "warning")),
    ]
    waiter = asyncio.ensure_future(proc.wait())
    cancelled = asyncio.ensure_future(cancel.wait()) if cancel is not None else None
    problem = ""
    was_cancelled = False
    try:
        if tracker is not None:
            await tracker.spawned(proc.pid, "script")
        watched = {waiter, cancelled} if cancelled is not None else {waiter}
        done, _ = await asyncio.wait(watched, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            was_cancelled = cancelled is not None and cancelled in done
            problem = "was cancelled" if was_cancelled else f"timed out after {timeout_s:g}s"
            await _stop(proc)
    finally:
        if cancelled is not None:
            cancelled.cancel()
        if proc.returncode is None:  # we are being cancelled ourselves: leave nothing behind
            signal_group(proc, signal.SIGKILL)
            await proc.wait()
        with contextlib.suppress(TimeoutError):
            # A child that inherited the pipes may hold them open: do not wait for it forever.
            await asyncio.wait_for(asyncio.gather(*readers), KILL_GRACE_S)
        for task in readers:
            task.cancel()
    # Killed by signal N reads as 128+N, as borg's codes and shells have it.
    code = exit_code_of(proc.returncode) if proc.returncode is not None else None
    if problem:
        return HookResult(command=command, ok=False, exit_code=code, problem=problem, cancelled=was_cancelled)
    if code != 0:
        return HookResult(command=command, ok=False, exit_code=code, problem=f"exited with {code}")
    return HookResult(command=command, ok=True, exit_code=0)


async def run_pre_scripts(
    scripts: list[str],
    env: dict[str, str],
    out: Output,
    *,
    timeout_s: float,
    cancel: asyncio.Event,
    tracker: Tracker | None = None,
) -> HookResult | None:
    """Each pre-script in turn, stopping at the first that fails (or is cancelled): its result."""
    for n, command in enumerate(scripts, 1):
        if cancel.is_set():
            return HookResult(command=command, ok=False, problem="was cancelled", cancelled=True)
        out.line(f"running pre-script {n}/{len(scripts)}: {command}", source="executor")
        done = await run_hook(command, env, out, timeout_s=timeout_s, cancel=cancel, tracker=tracker)
        if not done.ok:
            if not done.cancelled:
                out.line(f"pre-script `{command}` {done.problem}", level="error", source="executor")
            return done
        out.line(f"pre-script {n}/{len(scripts)} exited with 0", source="executor")
    return None


async def run_post_scripts(
    scripts: list[str], env: dict[str, str], out: Output, *, timeout_s: float, tracker: Tracker | None = None
) -> list[str]:
    """Every post-script, whatever the others did; what went wrong, one line per failed script.

    A cancel does not stop them: they are the cleanup, and their timeout bounds them.
    """
    problems: list[str] = []
    for n, command in enumerate(scripts, 1):
        out.line(f"running post-script {n}/{len(scripts)}: {command}", source="executor")
        done = await run_hook(command, env, out, timeout_s=timeout_s, tracker=tracker)
        if done.ok:
            out.line(f"post-script {n}/{len(scripts)} exited with 0", source="executor")
            continue
        problem = f"post-script `{command}` {done.problem}"
        out.line(problem, level="warning", source="executor")
        problems.append(problem)
    return problems


async def _stop(proc: asyncio.subprocess.Process) -> None:
    signal_group(proc, signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), KILL_GRACE_S)
    except TimeoutError:
        signal_group(proc, signal.SIGKILL)
        await proc.wait()


async def _pump(stream: asyncio.StreamReader, out: Output, level: str) -> None:
    async for text in text_lines(stream):
        out.line(text, level=level, source="hook")

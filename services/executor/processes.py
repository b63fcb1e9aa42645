"""Processes by pid and start time: is the one we recorded still there, and stopping it.

A pid alone names a process only while it lives: after it exits the kernel may hand the
same number to an unrelated process. Every pid the executor records is paired with the
process's start time (psutil's `create_time()`), and a pid counts as ours only while
both still match.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable

import psutil

# Start times are kept to 1/100 s (the kernel counts clock ticks); a reused pid starts
# at least a process lifetime later.
SAME_START_S = 0.05
POLL_S = 0.05
# After SIGKILL only the kernel can delay the end: a process in uninterruptible I/O (a hung NFS).
KILL_WAIT_S = 10.0

Say = Callable[[str], None]


def started_at(pid: int) -> float | None:
    """When process `pid` started, as a Unix time; None when there is no such process."""
    try:
        return round(float(psutil.Process(pid).create_time()), 2)
    except (psutil.Error, OSError):
        return None


def alive(pid: int | None, started: float | None) -> bool:
    """Whether the process recorded as (`pid`, `started`) still runs.

    A pid without a start time cannot be told from a reused one: it counts as gone.
    A zombie has finished its work (its parent, possibly init, has not reaped it yet).
    """
    if pid is None or started is None:
        return False
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - started) > SAME_START_S:
            return False
        return bool(proc.status() != psutil.STATUS_ZOMBIE)
    except (psutil.Error, OSError):
        return False


def pid_running(pid: int) -> bool:
    """Whether some process (not a zombie) has this pid now, whoever it is."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except (psutil.Error, OSError):
        return False


async def wait_gone(pid: int, started: float, timeout_s: float) -> bool:
    """Poll until the process has exited (True) or `timeout_s` passed (False).

    Polling, because the process is not our child: the one that started it has died,
    and nobody can wait() for it but init.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while alive(pid, started):
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(POLL_S)
    return True


async def stop_group(pid: int, started: float, grace_s: float, say: Say) -> str | None:
    """Stop a process group we started: SIGINT, then SIGTERM, then SIGKILL, `grace_s` apart.

    Returns the signal that stopped it (None: it had gone already). The process was
    started in its own session, so its group id is its pid and the group holds what it
    started too (borg's ssh, a script's children). The group is signalled only while its
    leader is provably the process we recorded, never a reused pid.
    """
    sent: str | None = None
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        if not alive(pid, started):
            return sent
        say(f"sending {sig.name} to pid {pid}")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        sent = sig.name
        if await wait_gone(pid, started, grace_s if sig != signal.SIGKILL else KILL_WAIT_S):
            return sent
        say(f"pid {pid} still running {grace_s:g}s after {sig.name}")
    return sent

"""Housekeeping after a backup was cancelled: a cancelled backup leaves no archive.

borg answers the first SIGINT by writing a checkpoint archive (`NAME.checkpoint`, hidden
from a plain `borg list`) and a later one may add `NAME.checkpoint.1`, .... They are
listed and deleted here. A borg that had to be SIGKILLed leaves its lock behind; on a
local repository nobody else can be using it (the dispatcher runs one writing job per
repository, and this one is still running), so the lock is broken. On a remote one the
lock belongs to the `borg serve` on the server, which may outlive our ssh and still be
writing: it is never broken automatically, a hint says how. A restarted executor
(recovery.py) breaks the lock its dead borg left the same way, once no borg of ours runs
on the repository and no live process holds the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

from services.executor import commands, processes
from services.executor.borgproc import BorgUnavailable, Output, Tracker, run_captured
from services.executor.parse import LogEntry

# Housekeeping commands are short; one that hangs (a dead ssh) must not hold the job.
TIMEOUT_S = 60.0


async def after_cancelled_backup(
    borg: str,
    location: str,
    archive: str,
    env: dict[str, str],
    out: Output,
    *,
    killed: bool,
    lock_wait: int,
    tracker: Tracker | None = None,
) -> list[str]:
    """Break a stale local lock, then delete the archive's checkpoints; the names deleted."""
    if killed:
        await break_lock(borg, location, env, out, tracker=tracker)
    return await delete_checkpoints(borg, location, archive, env, out, lock_wait=lock_wait, tracker=tracker)


async def break_lock(
    borg: str,
    location: str,
    env: dict[str, str],
    out: Output,
    *,
    tracker: Tracker | None = None,
    why: str = "borg was killed",
) -> None:
    if not commands.is_local(location):
        out.line(
            f"{why}: the lock on the remote repository {location} is not broken automatically, "
            "as borg on the server may still hold it. If no borg runs on it any more, run "
            f"`borg break-lock {location}`",
            level="warning",
            source="executor",
        )
        return
    try:
        done = await run_captured(commands.break_lock_command(borg, location), env, TIMEOUT_S, tracker)
    except BorgUnavailable as e:
        out.line(f"could not break the lock: {e}", level="warning", source="executor")
        return
    if done.code == 0:
        out.line(f"{why}: broke the lock it left on {location}", source="executor")
    else:
        out.line(f"`borg break-lock {location}` exited with {done.code}", level="warning", source="executor")


async def break_stale_lock(borg: str, location: str, env: dict[str, str], out: Output, *, why: str) -> None:
    """Break the lock a dead borg of ours left on a local repository, unless someone live holds it.

    Call it only once no borg of ours runs on the repository any more. A lock whose
    holder (named in borg's lock files) still runs on this machine belongs to someone
    else, a person's own borg say: it is left alone.
    """
    if not commands.is_local(location):
        await break_lock(borg, location, env, out, why=why)
        return
    locked, holders = await asyncio.to_thread(lock_holders, location)
    if not locked:
        out.line(f"no lock left on {location}", source="executor")
        return
    live = sorted(pid for pid in holders if processes.pid_running(pid))
    if live:
        out.line(
            f"the lock on {location} is held by pid {', '.join(map(str, live))}, which still runs: not broken",
            level="warning",
            source="executor",
        )
        return
    await break_lock(borg, location, env, out, why=why)


# borg 1.x names a lock holder `<host id>.<pid>-<thread id in hex>` (a file in
# lock.exclusive/) and lists holders as [host id, pid, thread id] in lock.roster.
_HOLDER = re.compile(r"\.(\d+)-[0-9a-f]+$")


def lock_holders(location: str) -> tuple[bool, set[int]]:
    """Whether a local repository is locked, and the pids its lock files name."""
    repo = Path(location.removeprefix("file://"))
    exclusive, roster = repo / "lock.exclusive", repo / "lock.roster"
    locked = exclusive.exists() or roster.exists()
    pids: set[int] = set()
    with contextlib.suppress(OSError):
        for name in os.listdir(exclusive):
            if match := _HOLDER.search(name):
                pids.add(int(match.group(1)))
    with contextlib.suppress(OSError, ValueError):
        doc = json.loads(roster.read_text())
        for entries in doc.values() if isinstance(doc, dict) else ():
            for entry in entries if isinstance(entries, list) else ():
                if isinstance(entry, list) and len(entry) == 3 and isinstance(entry[1], int):
                    pids.add(entry[1])
    return locked, pids


async def delete_checkpoints(
    borg: str,
    location: str,
    archive: str,
    env: dict[str, str],
    out: Output,
    *,
    lock_wait: int,
    tracker: Tracker | None = None,
) -> list[str]:
    try:
        listed = await run_captured(
            commands.list_checkpoints_command(borg, location, archive, lock_wait), env, TIMEOUT_S, tracker
        )
    except BorgUnavailable as e:
        out.line(f"could not look for checkpoint archives: {e}", level="warning", source="executor")
        return []
    if listed.code != 0:
        _report_failure(out, f"listing checkpoint archives of {archive}", listed.code, listed.entries)
        return []
    names = [line.strip() for line in listed.stdout.splitlines() if line.strip()]
    if not names:
        out.line(f"the cancelled backup left no checkpoint archive of {archive}", source="executor")
        return []
    deleted = await run_captured(
        commands.delete_archives_command(borg, location, names, lock_wait), env, TIMEOUT_S, tracker
    )
    if deleted.code != 0:
        _report_failure(out, f"deleting checkpoint archives {', '.join(names)}", deleted.code, deleted.entries)
        return []
    out.line(f"deleted the checkpoint archives the cancelled backup left: {', '.join(names)}", source="executor")
    return names


def _report_failure(out: Output, what: str, code: int, entries: Sequence[LogEntry]) -> None:
    said = "; ".join(e.message for e in entries if e.level in ("error", "critical", "warning"))
    out.line(
        f"{what} failed (borg exited with {code}){': ' + said if said else ''}; "
        "a prune of the repository removes checkpoint archives later",
        level="warning",
        source="executor",
    )

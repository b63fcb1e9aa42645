"""Housekeeping after a backup was cancelled: a cancelled backup leaves no archive.

borg answers the first SIGINT by writing a checkpoint archive (`NAME.checkpoint`, hidden
from a plain `borg list`) and a later one may add `NAME.checkpoint.1`, .... They are
listed and deleted here. A borg that had to be SIGKILLed leaves its lock behind; on a
local repository it is broken only while no holder may still be at work (locks.py): the
dispatcher runs one job per repository, but a person's own `borg list` or a borg on
another host sharing the filesystem holds the same lock, and `borg break-lock` would
remove their entries too. On a remote one the lock belongs to the `borg serve` on the
server, which may outlive our ssh and still be writing: it is never broken
automatically, a hint says how. A restarted executor (recovery.py) breaks the lock its
dead borg left the same way, once no borg of ours runs on the repository.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from services.executor import commands, locks, processes
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
    """Break the lock a dead borg of ours left on a local repository, unless a holder may still be at work.

    Call it only once no borg of ours runs on the repository any more. `borg break-lock`
    removes every holder, so it runs only when every holder named in the lock files is
    a dead process on this host: a reader that came meanwhile (a person's `borg list`,
    a check) keeps its shared lock, and a holder on another host (a shared filesystem)
    cannot be checked from here. A stale entry of ours left beside a live holder is
    removed by borg itself when it next takes the lock on this host.
    """
    if not commands.is_local(location):
        out.line(
            f"{why}: the lock on the remote repository {location} is not broken automatically, "
            "as borg on the server may still hold it. If no borg runs on it any more, run "
            f"`borg break-lock {location}`",
            level="warning",
            source="executor",
        )
        return
    locked, holders = await asyncio.to_thread(locks.read, location)
    if not locked:
        out.line(f"{why}: no lock left on {location}", source="executor")
        return
    host_id = await asyncio.to_thread(locks.borg_host_id, env)
    live = locks.may_be_live(holders, host_id=host_id, running=processes.pid_running)
    if live:
        out.line(
            f"{why}: the lock on {location} is also held by "
            f"{', '.join(h.describe() for h in live)}, which may still run: not broken "
            "(borg removes a dead process's entry itself the next time it takes the lock)",
            level="warning",
            source="executor",
        )
        return
    # A reader that comes between this read and borg's (its start-up, ~0.4 s) still loses
    # its entry: borg has no break-lock that spares live holders, so the window stays small.
    try:
        done = await run_captured(commands.break_lock_command(borg, location), env, TIMEOUT_S, tracker)
    except BorgUnavailable as e:
        out.line(f"could not break the lock: {e}", level="warning", source="executor")
        return
    if done.code == 0:
        out.line(f"{why}: broke the lock it left on {location}", source="executor")
    else:
        out.line(f"`borg break-lock {location}` exited with {done.code}", level="warning", source="executor")


def lock_holders(location: str) -> tuple[bool, set[int]]:
    """Whether a local repository is locked, and the pids its lock files name."""
    locked, holders = locks.read(location)
    return locked, {h.pid for h in holders}


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

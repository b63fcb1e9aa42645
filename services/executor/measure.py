"""The repository's figures after a job that changed it (backup, prune, compact).

They go into the job's result (`details.repository`), so they travel with the job's
terminal event and the projector folds them into the repository's stats: borg's
totals (from the backup's own `--json`, else a `borg info --json`), the archive
count (`borg list --short`), and the agent's view of the repository's file system
(`shutil.disk_usage` of a local repository; unknown for a remote one, as borg 1.x
does not report it). Measuring never changes how the job ends: a figure that cannot
be had is left out, with a warning in the job's log.
"""

from __future__ import annotations

import asyncio
import shutil
from typing import Any

import msgspec

from services.executor import commands
from services.executor.borgproc import BorgUnavailable, Output, Tracker, run_captured
from services.executor.endings import Ending
from services.executor.parse import parse_info_json
from shared.events import JobResult, JobSpec, JobStatus

MEASURED_TYPES = frozenset({"backup", "prune", "compact"})
# Both commands read only the manifest and the cache: quick, unless ssh hangs.
TIMEOUT_S = 120.0


def local_path(location: str) -> str | None:
    """The file system path of a local repository; None for a remote one."""
    if not commands.is_local(location):
        return None
    return location.removeprefix("file://")


def disk_figures(location: str) -> dict[str, int | None]:
    """`disk_used`, `disk_free`, `disk_total` of the repository's file system (None: remote or unreadable)."""
    path = local_path(location)
    if path is None:
        return {"disk_used": None, "disk_free": None, "disk_total": None}
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return {"disk_used": None, "disk_free": None, "disk_total": None}
    return {"disk_used": usage.used, "disk_free": usage.free, "disk_total": usage.total}


async def _run(argv: list[str], env: dict[str, str], what: str, out: Output, tracker: Tracker | None) -> str | None:
    try:
        done = await run_captured(argv, env, TIMEOUT_S, tracker)
    except BorgUnavailable as e:
        out.line(f"could not read the repository's {what}: {e}", level="warning", source="executor")
        return None
    if done.code != 0:
        out.line(
            f"could not read the repository's {what} (borg exited with {done.code})", level="warning", source="executor"
        )
        return None
    return done.stdout


async def measure(
    borg: str, spec: JobSpec, ending: Ending, env: dict[str, str], out: Output, tracker: Tracker | None = None
) -> Ending:
    """`ending` with the repository's figures in `result.details.repository`, after a job that changed it."""
    repo = spec.repository
    if spec.type not in MEASURED_TYPES or repo is None:
        return ending
    if ending.status not in (JobStatus.COMPLETED, JobStatus.WARNING):
        return ending
    result = ending.result or JobResult()
    wait = commands.lock_wait(spec)
    lock = [f"--lock-wait={wait}"] if wait is not None else []
    figures: dict[str, Any] = dict(result.details.get("repository") or {})
    if not figures:
        info = [borg, "info", "--json", "--log-json", *lock, "--", repo.location]
        stdout = await _run(info, env, "totals", out, tracker)
        figures |= parse_info_json(stdout) if stdout is not None else {}
    if spec.type == "backup" and repo.archives_counted:
        # One more than the count the read model holds (the projector adds it): listing every
        # archive after each backup cost a borg start-up, most of a small backup's overhead.
        figures["archives_added"] = 1
    else:
        listing = [borg, "list", "--short", "--log-json", *lock, "--", repo.location]
        stdout = await _run(listing, env, "archive count", out, tracker)
        if stdout is not None:
            figures["archives"] = sum(1 for line in stdout.splitlines() if line.strip())
    figures |= await asyncio.to_thread(disk_figures, repo.location)
    details = {**result.details, "repository": figures}
    return msgspec.structs.replace(ending, result=msgspec.structs.replace(result, details=details))

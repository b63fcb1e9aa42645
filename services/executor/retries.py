"""A retried backup whose archive was in fact created.

A backup can fail after borg committed its archive: the executor restarted between
borg's exit and the outcome, or the connection dropped while borg saved its cache. Its
retry carries the archive name the failed attempt used (`spec.archive`) and asks the
repository first: when the archive is there, the backup is done and is not run twice.
"""

from __future__ import annotations

from services.executor import commands
from services.executor.borgproc import BorgUnavailable, Output, Tracker, run_captured
from shared.events import JobResult, JobSpec

# A listing is quick; one that hangs (a dead ssh) must not hold the retry for long.
TIMEOUT_S = 120.0


def archive_to_look_for(spec: JobSpec) -> str | None:
    """The archive a retried backup's failed attempt wrote, if this job should look for it."""
    if spec.type != "backup" or not spec.retry_of or not spec.archive or spec.repository is None:
        return None
    return spec.archive


async def archive_exists(
    borg: str, spec: JobSpec, archive: str, env: dict[str, str], out: Output, tracker: Tracker | None = None
) -> bool | None:
    """Whether the repository holds `archive` (a `.checkpoint` of it does not count); None: cannot tell."""
    repo = spec.repository
    if repo is None:
        return None
    argv = commands.find_archive_command(borg, repo.location, archive, commands.lock_wait(spec))
    try:
        done = await run_captured(argv, env, TIMEOUT_S, tracker)
    except BorgUnavailable as e:
        out.line(f"could not look for archive {archive}: {e}", level="warning", source="executor")
        return None
    if done.code != 0:
        said = "; ".join(e.message for e in done.entries if e.level in ("error", "critical"))
        out.line(
            f"could not look for archive {archive} (borg exited with {done.code}){': ' + said if said else ''}",
            level="warning",
            source="executor",
        )
        return None
    return archive in {line.strip() for line in done.stdout.splitlines()}


def already_created(archive: str, retry_of: str) -> JobResult:
    return JobResult(archive=archive, details={"already_created": True, "by_job": retry_of})

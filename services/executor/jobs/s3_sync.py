"""`s3_sync`: mirror a repository's directory to any rclone remote (S3 or other), with an
optional bandwidth limit, progress read from rclone's JSON stats.

`rclone sync --use-json-log --stats=1s --stats-log-level=NOTICE` writes one JSON object
a line on stderr; those with a `stats` member carry the transfer so far (`bytes`,
`totalBytes`, `speed` in bytes/s, `eta` in seconds). rclone is `$BORGFLOW_RCLONE`, else
`rclone` on PATH; its remotes come from its own configuration (`rclone config`, or
RCLONE_CONFIG_* variables in the executor's environment), which the job never sees.

The job only reads the repository (the dispatcher may run it beside other readers,
never beside a writer), so the mirror is a consistent copy of what borg last wrote.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from services.executor.commands import is_local
from services.executor.endings import Ending
from services.executor.exceptions import BadJob
from services.executor.jobs.plugin import Command, CommandPlugin, PluginJob, completed
from services.executor.jobs.process import ProcessExit, ProcessUnavailable
from shared.events import Progress

# rclone's documented exit codes (rclone.org/docs/#exit-code).
EXIT_MEANINGS = {
    1: "syntax or usage error",
    2: "error not otherwise categorised",
    3: "directory not found",
    4: "file not found",
    5: "temporary error (one that more retries might fix)",
    6: "less serious errors (like 461 errors from dropbox)",
    7: "fatal error (one that more retries won't fix, like account suspended)",
    8: "transfer exceeded (a limit set by --max-transfer reached)",
    9: "no files transferred",
}
# rclone says these when the remote's name is not in its configuration.
_UNKNOWN_REMOTE = ("didn't find section in config file", "Failed to create file system")
_LEVELS = {"error": "error", "critical": "error", "fatal": "error", "warning": "warning", "notice": "info"}


def rclone_path(environ: Mapping[str, str]) -> str:
    """$BORGFLOW_RCLONE, else `rclone` on PATH."""
    return str(environ.get("BORGFLOW_RCLONE") or "rclone")


def sync_command(rclone: str, location: str, remote: str, bwlimit: str | None) -> list[str]:
    """The rclone command line; BadJob when the repository or remote cannot be mirrored."""
    if not is_local(location):
        raise BadJob(
            "bad_options",
            f"s3_sync mirrors a repository directory on its agent, and {location} is not a local path",
            "Queue the s3_sync on the agent that holds the repository's directory",
        )
    if not remote or remote.startswith("-"):
        raise BadJob(
            "bad_options", f"options.remote {remote!r} is not an rclone remote", "Give a remote like s3:bucket/path"
        )
    argv = [rclone, "sync", "--use-json-log", "--stats=1s", "--stats-log-level=NOTICE"]
    argv += [f"--bwlimit={bwlimit}"] if bwlimit else []
    return [*argv, "--", location.removeprefix("file://"), remote]


def progress_of(stats: dict[str, Any], bwlimit: str | None) -> Progress:
    """rclone's stats object as the job's progress."""
    done = _int(stats.get("bytes"))
    total = _int(stats.get("totalBytes"))
    percent = round(100.0 * done / total, 1) if done is not None and total else None
    speed = stats.get("speed")
    eta = stats.get("eta")
    return Progress(
        action="syncing",
        bytes_done=done,
        bytes_total=total,
        percent=percent,
        bytes_per_s=float(speed) if isinstance(speed, int | float) else None,
        eta_s=float(eta) if isinstance(eta, int | float) else None,
        bwlimit=bwlimit,
    )


def failure(code: int, errors: list[str], remote: str, agent: str) -> tuple[str, str, str]:
    """(kind, message, hint) for an rclone that exited `code` after logging `errors`."""
    last = errors[-1] if errors else EXIT_MEANINGS.get(code, "unknown error")
    message = f"rclone exited with {code} ({EXIT_MEANINGS.get(code, 'unknown')}): {last}"
    if any(marker in e for e in errors for marker in _UNKNOWN_REMOTE):
        return (
            "bad_remote",
            message,
            f"rclone on agent {agent} does not know the remote of {remote!r}: configure it there with "
            "`rclone config` (or RCLONE_CONFIG_* variables in the executor's environment), or fix options.remote",
        )
    if code == 5:
        return "connection", message, f"The remote {remote} failed for now (network, throttling): retry the job later"
    if code == 3:
        hint = "The repository's directory or the remote's path does not exist: check both, and the agent's access"
        return "sync_failed", message, hint
    if code == 1:
        return "bad_options", message, "rclone refused the command: check options.remote and options.bwlimit"
    return (
        "sync_failed",
        message,
        f"rclone could not mirror to {remote}: its log above says why (credentials, permissions, space)",
    )


@dataclass
class _Reading:
    bwlimit: str | None
    errors: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


class S3Sync(CommandPlugin[_Reading]):
    types: ClassVar[frozenset[str]] = frozenset({"s3_sync"})
    what: ClassVar[str] = "rclone"

    def command(self, job: PluginJob) -> Command:
        repo = job.spec.repository
        if repo is None:
            raise BadJob("bad_options", "an s3_sync job needs a repository", "Queue it with a repository_id")
        remote = str(job.spec.options.get("remote") or "")
        return Command(argv=sync_command(rclone_path(job.environ), repo.location, remote, _bwlimit(job)))

    def start(self, job: PluginJob) -> _Reading:
        reading = _Reading(bwlimit=_bwlimit(job))
        # Before the first stats (a second in): the limit is known already.
        job.progress(Progress(action="starting rclone", bwlimit=reading.bwlimit))
        return reading

    def read(self, job: PluginJob, state: _Reading, text: str, stream: str) -> None:
        entry = _json(text)
        if entry is None:  # rclone's last words before it exits are plain text
            state.errors.append(text)
            job.line(text, level="warning", source="rclone")
            return
        stats = entry.get("stats")
        if isinstance(stats, dict):
            state.stats = stats
            job.progress(progress_of(stats, state.bwlimit))
            return
        message = str(entry.get("msg", "")).strip()
        level = _LEVELS.get(str(entry.get("level")), "info")
        if message.startswith("Config file") and "not found" in message:
            level = "info"  # remotes may come from the environment instead
        if level == "error":
            state.errors.append(message)
        job.line(message, level=level, source="rclone")

    def outcome(self, job: PluginJob, done: ProcessExit, state: _Reading) -> Ending:
        remote = str(job.spec.options.get("remote") or "")
        if done.code != 0:
            kind, message, hint = failure(done.code, state.errors, remote, job.agent)
            return job.failed(kind, message, hint, exit_code=done.code)
        s = state.stats
        details = {
            "remote": remote,
            "bytes": s.get("bytes", 0),
            "transfers": s.get("transfers", 0),
            "checks": s.get("checks", 0),
            "deletes": s.get("deletes", 0),
        }
        if state.bwlimit:
            details["bwlimit"] = state.bwlimit
        return completed(details)

    def unavailable(self, job: PluginJob, error: ProcessUnavailable) -> Ending:
        return job.failed(
            "rclone_missing",
            str(error),
            f"Install rclone on agent {job.agent} (Debian: apt-get install rclone; `make install` does it), "
            "or point BORGFLOW_RCLONE at the rclone executable",
        )


def _bwlimit(job: PluginJob) -> str | None:
    value = job.spec.options.get("bwlimit")
    return str(value) if value else None


def _json(text: str) -> dict[str, Any] | None:
    if not text.startswith("{"):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _int(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) else None

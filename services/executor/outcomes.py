"""Pure classification of how borg ended: exit code plus the messages it logged → a status,
an error kind, and a hint a person can act on.

Order of evidence (reference 4.6): the `msgid` of borg's error lines first (present for
errors in 1.2 and 1.4), then the modern exit code (BORG_EXIT_CODES=modern: errors 3–99,
warnings 100–127), then the legacy code and levelname. Message text is never used to
decide a kind: it changes between versions (1.2.4 lower-cases the passphrase error).
"""

from __future__ import annotations

import re
import signal
from collections.abc import Sequence
from typing import Literal

import msgspec

from shared.events import JobError

Status = Literal["completed", "warning", "failed"]

ERROR_LEVELS = frozenset({"error", "critical"})
WARNING_LEVELS = frozenset({"warning"})

MAX_MESSAGE_CHARS = 2000


class BorgMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One message borg logged (or printed plainly), as the classifier needs it."""

    level: str
    message: str
    msgid: str | None = None


class HintContext(msgspec.Struct, frozen=True, kw_only=True):
    """What the hints may name: where the repository is, which one, which agent."""

    location: str = ""
    repository_id: str | None = None
    agent: str = ""
    api_url: str = ""


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    status: Status
    error: JobError | None = None
    warnings: list[str] = []


# borg's exception class (its msgid) -> error kind. Only specific classes: the generic
# `Error` (e.g. SIGINT) and `Exception` fall through to the exit code.
MSGID_KINDS: dict[str, str] = {
    "PassphraseWrong": "passphrase",
    "NoPassphraseFailure": "passphrase",
    "PasscommandFailure": "passphrase",
    "PasswordRetriesExceeded": "passphrase",
    "LockTimeout": "lock_timeout",
    "Repository.DoesNotExist": "repository_not_found",
    "Repository.InvalidRepository": "repository_not_found",
    "Repository.ParentPathDoesNotExist": "repository_not_found",
    "Repository.AlreadyExists": "repository_exists",
    "Repository.PathAlreadyExists": "repository_exists",
    "Repository.InsufficientFreeSpaceError": "no_space",
    "Repository.StorageQuotaExceeded": "no_space",
    "Repository.PathPermissionDenied": "permission_denied",
    "Repository.CheckNeeded": "integrity",
    "Repository.ObjectNotFound": "integrity",
    "Archive.AlreadyExists": "archive_exists",
    "Archive.DoesNotExist": "archive_not_found",
    "BackupFileNotFoundError": "source_not_found",
    "BackupPermissionError": "permission_denied",
    "CommandError": "bad_options",
    "PlaceholderError": "bad_options",
    "InvalidPlaceholder": "bad_options",
    "ConnectionClosed": "connection",
    "ConnectionClosedWithHint": "connection",
    "ConnectionBrokenWithHint": "connection",
    "PathNotAllowed": "connection",
    "IntegrityError": "integrity",
    "FileIntegrityError": "integrity",
    "DecompressionError": "integrity",
}

# Modern exit codes (borg 1.4 source) -> kind; codes not listed are a plain borg_error.
MODERN_CODE_KINDS: dict[int, str] = {
    4: "bad_options",
    5: "bad_options",
    6: "bad_options",
    10: "repository_exists",
    12: "integrity",
    13: "repository_not_found",
    14: "no_space",
    15: "repository_not_found",
    17: "integrity",
    18: "repository_not_found",
    19: "repository_exists",
    20: "no_space",
    21: "permission_denied",
    30: "archive_exists",
    31: "archive_not_found",
    50: "passphrase",
    51: "passphrase",
    52: "passphrase",
    53: "passphrase",
    73: "lock_timeout",
    80: "connection",
    81: "connection",
    83: "connection",
    87: "connection",
    90: "integrity",
    91: "integrity",
    92: "integrity",
    95: "integrity",
    96: "integrity",
    97: "integrity",
    98: "integrity",
}

SIGNAL_BASE = 128


def exit_code_of(returncode: int) -> int:
    """A subprocess return code as borg reports it: killed by signal N (-N) becomes 128+N."""
    return SIGNAL_BASE - returncode if returncode < 0 else returncode


def status_of(exit_code: int) -> Status:
    """0 completed; 1 (legacy) and 100–127 (modern) warnings; everything else failed."""
    if exit_code == 0:
        return "completed"
    if exit_code == 1 or 100 <= exit_code <= 127:
        return "warning"
    return "failed"


def classify(exit_code: int, messages: Sequence[BorgMessage], ctx: HintContext) -> Verdict:
    """The outcome of one borg run."""
    status = status_of(exit_code)
    warnings = [_clip(m.message) for m in messages if m.level in WARNING_LEVELS and m.message.strip()]
    if status != "failed":
        return Verdict(status=status, warnings=warnings)
    kind, msgid, message = _error_kind(exit_code, messages)
    return Verdict(
        status="failed",
        warnings=warnings,
        error=JobError(
            kind=kind, message=message, exit_code=exit_code, hint=hint_for(kind, ctx, msgid, path=path_in(message))
        ),
    )


def _error_kind(exit_code: int, messages: Sequence[BorgMessage]) -> tuple[str, str | None, str]:
    errors = [m for m in messages if m.level in ERROR_LEVELS and m.message.strip()]
    # borg logs its fatal error last (a traceback may follow at a lower level): the
    # last error line with a known msgid is the one that ended the run.
    for m in reversed(errors):
        if m.msgid in MSGID_KINDS:
            return MSGID_KINDS[m.msgid], m.msgid, _clip(m.message)
    message = _best_message(exit_code, errors, messages)
    if exit_code in MODERN_CODE_KINDS:
        return MODERN_CODE_KINDS[exit_code], None, message
    return "borg_error", None, message


def _best_message(exit_code: int, errors: Sequence[BorgMessage], messages: Sequence[BorgMessage]) -> str:
    if errors:
        return _clip(errors[-1].message)
    plain = [m for m in messages if m.msgid is None and m.message.strip() and m.level not in WARNING_LEVELS]
    if plain:
        return _clip(plain[-1].message)
    if exit_code > SIGNAL_BASE:
        try:
            name = signal.Signals(exit_code - SIGNAL_BASE).name
        except ValueError:
            name = f"signal {exit_code - SIGNAL_BASE}"
        return f"borg was stopped by {name} (exit code {exit_code})"
    return f"borg exited with code {exit_code}"


def _clip(message: str) -> str:
    text = message.strip()
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"


# Where an OS error message names its path: `[Errno 13] Permission denied: '/x/y'`, or
# borg's own `Permission denied to /x/y.` Only for naming the path in a hint.
_QUOTED_PATH = re.compile(r"'(/[^']*)'")
_DENIED_TO = re.compile(r"denied to (/\S+?)\.?$")


def path_in(message: str) -> str | None:
    """The path an error message names, if it names one (for the hint; never for the kind)."""
    found = _QUOTED_PATH.findall(message)
    if found:
        return str(found[-1])
    match = _DENIED_TO.search(message.strip())
    return match.group(1) if match else None


def repository_host(location: str) -> str | None:
    """The host of a remote location (`ssh://user@host:22/path`, `user@host:path`), else None."""
    match = re.match(r"^ssh://(?:[^@/]*@)?(\[[^]]+\]|[^:/]+)", location) or re.match(
        r"^(?:[^@/:]*@)?([^:/]+):(?!//)", location
    )
    return match.group(1) if match else None


def hint_for(kind: str, ctx: HintContext, msgid: str | None = None, *, path: str | None = None) -> str:
    """A fix a person can act on, naming the repository, location, agent or path involved."""
    repo = f"PUT /api/repositories/{ctx.repository_id}" if ctx.repository_id else "PUT /api/repositories/{id}"
    where = ctx.location or "the repository location"
    agent = f"agent {ctx.agent}" if ctx.agent else "this agent"
    host = repository_host(ctx.location)
    if kind == "passphrase":
        if msgid == "NoPassphraseFailure":
            return f"The repository needs a passphrase and borgflow has none for it: set one with {repo}"
        return f"The repository passphrase is wrong: update it with {repo}"
    hints = {
        "lock_timeout": (
            "Another borg process holds the repository lock; wait for it or raise --lock-wait "
            "(job option lock_wait). If no borg is running on it, "
            f"`borg break-lock {where}` removes a stale lock"
        ),
        "repository_not_found": f"No borg repository at {where}: run an init job first or fix the location",
        "repository_exists": f"A borg repository already exists at {where}: it needs no init job",
        "archive_exists": (
            "An archive with this name already exists: make the plan's archive_name unique, e.g. with {now}"
        ),
        "archive_not_found": (
            f"No archive with this name in {where}: pick one from its archive list "
            f"(GET /api/repositories/{ctx.repository_id or '{id}'}/archives, or `borg list {where}`)"
        ),
        "source_not_found": f"A path to back up does not exist on {agent}: fix the plan's paths",
        "permission_denied": (
            f"borg on {agent} was refused access to {path or where}: run the agent as a user who may read "
            f"{'it' if path else 'the sources'} (and write the repository), or fix its permissions"
        ),
        "no_space": (
            f"The disk holding {where} is full (or its quota is used up): free space on it, "
            "or prune and compact old archives"
        ),
        "connection": (
            f"The connection to {'the repository host ' + host if host else where} was closed or refused: "
            "check SSH access and the network to it, and that borg is installed there"
        ),
        "integrity": ("borg found damaged or inconsistent data: run a check job (with verify_data) and read its log"),
        "bad_options": "borg refused the command: fix the job's options or the plan",
        "borg_missing": f"Install borgbackup 1.4 on {agent}, or point BORGFLOW_BORG at the borg executable",
        "secret_unavailable": (
            f"The executor on {agent} could not fetch the passphrase from the api"
            + (f" at {ctx.api_url}" if ctx.api_url else "")
            + ": check BORGFLOW_API_URL and BORGFLOW_TOKEN there, then retry the job"
        ),
        "executor_restarted": (
            f"The executor on {agent} stopped while the job ran. It is safe to retry the job; for a backup, "
            "the plan's automatic retry (its `retry` setting) will do so"
        ),
        "stalled": (
            "borg printed nothing for the stall timeout: check the repository's reachability and the source "
            "file system; raise the plan's stall_timeout_s if this job is legitimately slow"
        ),
        "hook_failed": "Fix the plan's script (its output is in the job log) so that it exits 0, or remove it",
        "internal": f"The executor on {agent} hit a bug: its own log has the details; retry the job",
        "borg_error": "See the job log for borg's full output",
        "dump_failed": (
            f"A database dump failed on {agent} (the database server's message is above): check the plan's "
            "databases (host, port, user, database name, password) and that the user may read every table; "
            "`plugin_test` checks them without a backup"
        ),
        "dump_not_found": (
            "The archive holds no dump of this database: pick an archive made by a plan that dumps it "
            "(its dumps are under borgflow-dumps/<kind>/<database>.dump)"
        ),
        "database_connection": (
            f"The database server did not accept the connection from {agent}: check the host, port, user and "
            "password, that the server runs, and that it lets this host in (pg_hba.conf, MySQL user@host)"
        ),
        "database_privileges": (
            "The database user lacks a privilege the restore needs: use a user that may create the database "
            "and its objects (for PostgreSQL the owner or a superuser; for MySQL CREATE, INSERT, ALTER)"
        ),
        "database_version": (
            f"The dump is from a newer server than the tools on {agent} read: install the client tools "
            "(pg_restore / mariadb) of the dump's version or newer on the agent"
        ),
        "restore_failed": "The restore stopped (the job log has the database client's output): fix the cause, retry",
        "script_missing": (
            f"A pre/post script of the plan is not on {agent} or is not executable: install it there, "
            "`chmod +x` it, or fix the plan's scripts"
        ),
        "sync_failed": "rclone could not mirror the repository: the job log has its errors (credentials, space)",
        "bad_remote": (
            f"rclone on {agent} does not know this remote: configure it with `rclone config` there "
            "(or RCLONE_CONFIG_* variables in the executor's environment), or fix options.remote"
        ),
        "rclone_missing": f"Install rclone on {agent} (apt-get install rclone), or point BORGFLOW_RCLONE at it",
        "package_not_found": f"No such package in the package sources of {agent}: check its name and sources",
        "install_failed": f"apt-get failed on {agent}: the job log has its output",
        "apt_unavailable": f"{agent} has no apt-get: install the packages with its own package manager",
        "update_failed": (
            f"{agent} keeps the borg (or borgflow) it had: the job log has pip's output "
            "(does the version exist on the agent's index? can it reach the index?)"
        ),
    }
    return hints.get(kind, "")

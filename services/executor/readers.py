"""How each job type reads what borg said: its progress, its result details, and the
last word on its outcome. Pure: the collector feeds parsed lines in, the clock comes in
as `elapsed_s`, and nothing here does I/O.

Adding a job type: a builder in commands.COMMANDS and, when it says more than its exit
code, a Reader here (in `reader_for`).
"""

from __future__ import annotations

from typing import Any

import msgspec

from services.executor.outcomes import MSGID_KINDS, SIGNAL_BASE, HintContext, Verdict, hint_for
from services.executor.parse import (
    LogEntry,
    ParsedResult,
    ProgressUpdate,
    advance,
    parse_create_json,
    parse_freed,
    parse_prune_line,
)
from shared.events import Estimate, JobError, JobSpec, Progress

# borg's --list output and --stats tables: results, not diagnostics.
LIST_LOGGER = "borg.output.list"
OUTPUT_LOGGERS = frozenset({LIST_LOGGER, "borg.output.stats"})
# A restore_check names at most this many items in its details (all of them are in the log).
MAX_LISTED_PATHS = 100
# A check keeps at most this many of borg's error lines in its details.
MAX_PROBLEMS = 100
# Where borg's repository and archive checkers log what they find.
CHECKER_LOGGERS = frozenset({"borg.repository", "borg.archive"})
# While a backup runs it is never shown as done: borg still has to write its cache.
MAX_RUNNING_PERCENT = 99.9


class Reader:
    """The default: progress as borg reports it, no details, the verdict as classified."""

    def __init__(self, archive: str | None = None) -> None:
        self.archive = archive

    def progress(self, progress: Progress, update: ProgressUpdate, elapsed_s: float) -> Progress:
        return advance(progress, update, elapsed_s)

    def log(self, progress: Progress, entry: LogEntry) -> Progress | None:
        """Take note of a log line; a new progress when the line moves it."""
        return None

    def result(self, stdout: bytes) -> ParsedResult:
        return ParsedResult(archive=self.archive, details=self.details())

    def details(self) -> dict[str, Any]:
        return {}

    def failure_details(self) -> dict[str, Any]:
        """What a failed run still has to say (most say nothing)."""
        return {}

    def verdict(self, verdict: Verdict, exit_code: int, ctx: HintContext) -> Verdict:
        return verdict


class BackupReader(Reader):
    """`borg create`: percent and ETA against the plan's previous backup, stats from --json."""

    def __init__(self, archive: str | None, estimate: Estimate | None) -> None:
        super().__init__(archive)
        self.estimate = estimate

    def progress(self, progress: Progress, update: ProgressUpdate, elapsed_s: float) -> Progress:
        # create's progress_percent lines count a phase (syncing the chunks cache), not the
        # backup: their words make an action, their numbers must not pass for the job's.
        update = msgspec.structs.replace(update, percent=None, current=None, total=None)
        new = advance(progress, update, elapsed_s)
        fraction = backup_fraction(new, self.estimate)
        if fraction is None:
            return new
        percent = min(MAX_RUNNING_PERCENT, round(fraction * 100, 1))
        # From the rate so far; once past the estimate, this backup is bigger than the last
        # one and how much is left cannot be told.
        eta = round(elapsed_s * (1 - fraction) / fraction, 1) if 0 < fraction < 1 and elapsed_s > 0 else None
        return msgspec.structs.replace(new, percent=percent, eta_s=eta)

    def result(self, stdout: bytes) -> ParsedResult:
        return parse_create_json(stdout)


def backup_fraction(progress: Progress, estimate: Estimate | None) -> float | None:
    """How far a backup is, by bytes read when the estimate knows its size, else by files."""
    if estimate is None:
        return None
    if estimate.original_size and progress.original_size is not None:
        return progress.original_size / estimate.original_size
    if estimate.nfiles and progress.nfiles is not None:
        return progress.nfiles / estimate.nfiles
    return None


class ExtractReader(Reader):
    """`borg extract --list --progress` (restore) and its `--dry-run` (restore_check)."""

    def __init__(self, archive: str | None, destination: str | None) -> None:
        super().__init__(archive)
        self.destination = destination
        """Where a restore writes; None for a dry run, which writes nothing."""
        self.files = 0
        self.paths: list[str] = []
        self.bytes: int | None = None

    def progress(self, progress: Progress, update: ProgressUpdate, elapsed_s: float) -> Progress:
        new = advance(progress, update, elapsed_s)
        if update.msgid == "extract" and update.current_file:
            path = update.current_file
            action = f"verifying {path}" if self.destination is None else f"restoring {path} to {self.destination}"
            new = msgspec.structs.replace(new, action=action)
        changes: dict[str, Any] = {"nfiles": self.files}
        if update.current is not None and update.total:
            self.bytes = update.current
            if elapsed_s > 0:
                changes["bytes_per_s"] = round(update.current / elapsed_s, 1)
        return msgspec.structs.replace(new, **changes)

    def log(self, progress: Progress, entry: LogEntry) -> Progress | None:
        if entry.name != LIST_LOGGER:
            return None
        self.files += 1
        if len(self.paths) < MAX_LISTED_PATHS:
            self.paths.append(entry.message)
        return msgspec.structs.replace(progress, nfiles=self.files)

    def details(self) -> dict[str, Any]:
        if self.destination is None:
            out: dict[str, Any] = {"files": self.files, "paths": list(self.paths)}
            if self.bytes is not None:
                out["bytes"] = self.bytes
            return out
        return {"destination": self.destination, "files": self.files, "bytes": self.bytes or 0}


class CheckReader(Reader):
    """`borg check`: the error lines it logs are the problems it found."""

    def __init__(self, partial: bool) -> None:
        super().__init__()
        self.partial = partial
        self.problems: list[str] = []

    def log(self, progress: Progress, entry: LogEntry) -> Progress | None:
        # What the checkers found, not why borg could not check (a lock, a passphrase).
        found = entry.name in CHECKER_LOGGERS or MSGID_KINDS.get(entry.msgid or "") == "integrity"
        if found and entry.level in ("error", "critical") and len(self.problems) < MAX_PROBLEMS:
            self.problems.append(entry.message.strip())
        return None

    def details(self) -> dict[str, Any]:
        return {"problems": list(self.problems), "partial": self.partial}

    def failure_details(self) -> dict[str, Any]:
        return self.details()

    def verdict(self, verdict: Verdict, exit_code: int, ctx: HintContext) -> Verdict:
        if exit_code == 0 or exit_code >= SIGNAL_BASE:
            return verdict  # fine, or stopped by a signal (a cancel): not a finding
        error = verdict.error
        # borg check reports what it found as a *warning* exit (1, in both exit-code
        # modes) after error lines that carry no msgid; damage it cannot even read past
        # is an IntegrityError (msgid, modern code 90). Either way the repository is
        # damaged: a failure, not a warning. A lock or passphrase error stays what it is.
        damaged = verdict.status == "warning" or (error is not None and error.kind == "integrity")
        if not damaged:
            return verdict
        count = len(self.problems)
        first = self.problems[0] if self.problems else (error.message if error else "problems found")
        lines = f"{count} error line{'s' if count != 1 else ''}"
        message = f"borg check found damage ({lines}), first: {first}" if count else first
        return Verdict(
            status="failed",
            warnings=verdict.warnings,
            error=JobError(
                kind="integrity",
                message=message,
                exit_code=exit_code,
                hint=check_repair_hint(ctx.location),
            ),
        )


def check_repair_hint(location: str) -> str:
    where = location or "REPOSITORY"
    return (
        f"The repository is damaged. Copy it first (e.g. `cp -a {where} {where}.bak`), then run a check with "
        f"repair: `borg check --repair {where}`; back up anew afterwards, as repaired files may be incomplete"
    )


class PruneReader(Reader):
    """`borg prune --list`: which archives were kept and which pruned."""

    def __init__(self) -> None:
        super().__init__()
        self.kept: list[str] = []
        self.pruned: list[str] = []

    def log(self, progress: Progress, entry: LogEntry) -> Progress | None:
        if entry.name == LIST_LOGGER and (decision := parse_prune_line(entry.message)) is not None:
            (self.kept if decision.kept else self.pruned).append(decision.archive)
        return None

    def details(self) -> dict[str, Any]:
        # The projector removes `pruned` names from the repository's archive list.
        return {"kept": list(self.kept), "pruned": list(self.pruned)}


class CompactReader(Reader):
    """`borg compact --info`: how much space it gave back."""

    def __init__(self) -> None:
        super().__init__()
        self.freed: tuple[int, str] | None = None

    def log(self, progress: Progress, entry: LogEntry) -> Progress | None:
        if entry.level == "info" and (freed := parse_freed(entry.message)) is not None:
            self.freed = freed
        return None

    def details(self) -> dict[str, Any]:
        if self.freed is None:
            return {}
        return {"freed_bytes": self.freed[0], "freed": self.freed[1]}


class DeleteReader(Reader):
    """`borg delete REPO::ARCHIVE`: a missing archive is borg's warning, the job's failure."""

    def __init__(self, archive: str | None) -> None:
        super().__init__()
        self.deleted = archive

    def details(self) -> dict[str, Any]:
        return {"deleted": self.deleted}

    def verdict(self, verdict: Verdict, exit_code: int, ctx: HintContext) -> Verdict:
        # Deleting one named archive, borg's only plain warning (exit code 1 in both modes,
        # no msgid) is "Archive X not found". A person asked to delete something that is
        # not there: that is a failure to report, not a warning to shrug at.
        if verdict.status != "warning" or exit_code != 1:
            return verdict
        message = verdict.warnings[-1] if verdict.warnings else f"Archive {self.deleted} not found"
        return Verdict(
            status="failed",
            warnings=verdict.warnings,
            error=JobError(
                kind="archive_not_found", message=message, exit_code=exit_code, hint=hint_for("archive_not_found", ctx)
            ),
        )


def reader_for(spec: JobSpec, archive: str | None) -> Reader:
    """The reader for a job (`archive` is what the job's command writes or reads)."""
    options = spec.options
    if spec.type == "backup":
        return BackupReader(archive, spec.estimate)
    if spec.type == "restore":
        return ExtractReader(archive, str(options.get("destination") or ""))
    if spec.type == "restore_check":
        return ExtractReader(archive, None)
    if spec.type == "check":
        return CheckReader(partial=options.get("max_duration") is not None)
    if spec.type == "prune":
        return PruneReader()
    if spec.type == "compact":
        return CompactReader()
    if spec.type == "delete_archive":
        return DeleteReader(spec.archive)
    return Reader(archive)

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
    parse_deleted,
    parse_freed,
    parse_prune_line,
)
from services.executor.verification import ArchiveVerdict, CheckFindings, as_details, requested_archives
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
    """`borg create`: percent and ETA estimated from an earlier backup of the same paths and
    excludes (`progress.estimated`), stats from --json, and what it covered in its details
    (`sources`: the next backup's estimate is taken only from an archive of the same)."""

    def __init__(
        self, archive: str | None, estimate: Estimate | None, sources: dict[str, list[str]] | None = None
    ) -> None:
        super().__init__(archive)
        self.estimate = estimate
        self.sources = sources

    def progress(self, progress: Progress, update: ProgressUpdate, elapsed_s: float) -> Progress:
        # create's progress_percent lines count a phase (syncing the chunks cache), not the
        # backup: their words make an action, their numbers must not pass for the job's.
        update = msgspec.structs.replace(update, percent=None, current=None, total=None)
        new = advance(progress, update, elapsed_s)
        return estimated_progress(new, self.estimate, elapsed_s)

    def result(self, stdout: bytes) -> ParsedResult:
        parsed = parse_create_json(stdout)
        if self.sources is None or parsed.archive is None:
            return parsed
        return msgspec.structs.replace(parsed, details=parsed.details | {"sources": self.sources})


def estimated_progress(progress: Progress, estimate: Estimate | None, elapsed_s: float) -> Progress:
    """A running backup's percent and ETA against its estimate, marked `estimated`.

    Nothing to go on: no percent at all. Past the estimate (this backup is bigger than the
    archive it is estimated from), how much is left cannot be told: the percent and ETA are
    dropped rather than pinned just under 100.
    """
    fraction = backup_fraction(progress, estimate)
    if fraction is None or fraction >= 1:
        return msgspec.structs.replace(progress, percent=None, eta_s=None, estimated=None)
    percent = min(MAX_RUNNING_PERCENT, round(fraction * 100, 1))
    eta = round(elapsed_s * (1 - fraction) / fraction, 1) if fraction > 0 and elapsed_s > 0 else None
    return msgspec.structs.replace(progress, percent=percent, eta_s=eta, estimated=True)


def sources_of(spec: JobSpec) -> dict[str, list[str]] | None:
    """What a backup of the spec's plan covers: the estimate of a later one must match it."""
    if spec.plan is None:
        return None
    return {"paths": list(spec.plan.paths), "exclude": list(spec.plan.exclude)}


def estimate_for(spec: JobSpec) -> Estimate | None:
    """The spec's estimate when it is from a backup of the same paths and excludes (or says nothing of them)."""
    estimate, sources = spec.estimate, sources_of(spec)
    if estimate is None or sources is None or estimate.paths is None:
        return estimate
    same = estimate.paths == sources["paths"] and (estimate.exclude or []) == sources["exclude"]
    return estimate if same else None


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

    def __init__(self, partial: bool, findings: CheckFindings | None = None) -> None:
        super().__init__()
        self.partial = partial
        self.problems: list[str] = []
        # Per-archive verdicts; None for a repository-only check, which checks no archive.
        self.findings = findings
        self.verdicts: list[ArchiveVerdict] | None = None
        """Set once damaged chunks were mapped onto archives (verification.map_damage)."""
        self.damaged = False
        """borg found damage: the run failed as `integrity`, and its verdicts stand."""

    def log(self, progress: Progress, entry: LogEntry) -> Progress | None:
        if self.findings is not None:
            self.findings.note(entry)
        # What the checkers found, not why borg could not check (a lock, a passphrase).
        found = entry.name in CHECKER_LOGGERS or MSGID_KINDS.get(entry.msgid or "") == "integrity"
        if found and entry.level in ("error", "critical") and len(self.problems) < MAX_PROBLEMS:
            self.problems.append(entry.message.strip())
        return None

    def details(self) -> dict[str, Any]:
        out: dict[str, Any] = {"problems": list(self.problems), "partial": self.partial}
        if self.findings is not None:
            verdicts = self.verdicts if self.verdicts is not None else self.findings.verdicts()
            out["verification"] = as_details(verdicts)
            out["verify_data"] = self.findings.verify_data
        return out

    def failure_details(self) -> dict[str, Any]:
        details = self.details()
        if not self.damaged:
            # borg stopped for another reason (a lock, a lost connection): an archive it was
            # analyzing was not verified, so no verdict is better than a wrong OK.
            details.pop("verification", None)
        return details

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
        self.damaged = True
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
        "The repository is damaged: restore what you need from an archive the verification report "
        "(GET /api/repositories/{id}/verification, `borgflow repo verify NAME`) shows OK. "
        f"To repair it, copy it first (e.g. `cp -a {where} {where}.bak`), then run a check with "
        f"repair: `borg check --repair {where}`; back up anew afterwards, as repaired files may be incomplete"
    )


class PruneReader(Reader):
    """`borg prune --list`: which archives were kept and which pruned."""

    def __init__(self) -> None:
        super().__init__()
        self.kept: list[str] = []
        self.pruned: list[str] = []
        self.deleted_bytes: int | None = None

    def log(self, progress: Progress, entry: LogEntry) -> Progress | None:
        if entry.name == LIST_LOGGER and (decision := parse_prune_line(entry.message)) is not None:
            (self.kept if decision.kept else self.pruned).append(decision.archive)
        elif entry.name == "borg.output.stats" and (deleted := parse_deleted(entry.message)) is not None:
            # What the pruned archives held alone: the space the next compact gives back.
            self.deleted_bytes = deleted
            return msgspec.structs.replace(progress, deduplicated_size=deleted)
        return None

    def details(self) -> dict[str, Any]:
        # The projector removes `pruned` names from the repository's archive list.
        out: dict[str, Any] = {"kept": list(self.kept), "pruned": list(self.pruned)}
        if self.deleted_bytes is not None:
            out["deleted_bytes"] = self.deleted_bytes
        return out


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
        return BackupReader(archive, estimate_for(spec), sources_of(spec))
    if spec.type == "restore":
        return ExtractReader(archive, str(options.get("destination") or ""))
    if spec.type == "restore_check":
        return ExtractReader(archive, None)
    if spec.type == "check":
        partial = bool(options.get("max_duration"))
        archives = not (partial or options.get("repository_only"))
        findings = CheckFindings(bool(options.get("verify_data")), requested_archives(spec)) if archives else None
        return CheckReader(partial=options.get("max_duration") is not None, findings=findings)
    if spec.type == "prune":
        return PruneReader()
    if spec.type == "compact":
        return CompactReader()
    if spec.type == "delete_archive":
        return DeleteReader(spec.archive)
    return Reader(archive)

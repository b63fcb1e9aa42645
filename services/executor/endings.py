"""How a job ends, decided from what happened: pure functions from borg's exit, the
reader's verdict and the job's own findings to a status, a result and an error."""

from __future__ import annotations

from typing import Any

import msgspec

from services.executor.borgproc import BorgExit
from services.executor.collect import OutputCollector
from services.executor.outcomes import HintContext, classify, hint_for
from services.executor.readers import Reader
from shared.events import JobError, JobResult, JobStatus, Progress

# Archive stats that also belong in the job's final progress.
TOTALS = ("nfiles", "original_size", "compressed_size", "deduplicated_size")


class Ending(msgspec.Struct, frozen=True, kw_only=True):
    status: JobStatus
    result: JobResult | None = None
    error: JobError | None = None
    relaunch: str | None = None
    """An update_agent's new `borgflow`: the executor becomes it before this outcome is
    published (recorded, it is published by the new executor's recovery)."""

    @property
    def exit_code(self) -> int | None:
        """borg's exit code (or a failed script's), when there was one."""
        if self.result is not None and self.result.exit_code is not None:
            return self.result.exit_code
        return self.error.exit_code if self.error is not None else None


class CancelRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Why a running job is asked to stop; the first request decides how it ends."""

    by: str | None = None
    reason: str = "cancelled by user"
    kind: str = "cancelled_by_user"
    """The error kind it ends with: cancelled_by_user, or stalled (the dispatcher saw no progress)."""
    shutdown: bool = False
    """The executor itself is stopping: the job fails as executor_restarted, to be retried."""

    @property
    def stalled(self) -> bool:
        return self.kind == "stalled"

    def describe(self) -> str:
        """The reason, naming who asked; a stall's reason stands alone (the dispatcher always asks)."""
        return f"{self.reason} by {self.by}" if self.by and not self.stalled else self.reason


def failed(kind: str, message: str, hint: str, exit_code: int | None = None) -> Ending:
    return Ending(status=JobStatus.FAILED, error=JobError(kind=kind, message=message, hint=hint, exit_code=exit_code))


def from_borg(done: BorgExit, collector: OutputCollector, reader: Reader, hints: HintContext) -> Ending:
    """A borg run that was not interrupted by us: classified, then the job type's last word."""
    code = done.code
    verdict = reader.verdict(classify(code, collector.messages, hints), code, hints)
    if verdict.status == "failed":
        details = reader.failure_details()
        result = JobResult(exit_code=code, details=details) if details else None
        return Ending(status=JobStatus.FAILED, error=verdict.error, result=result)
    parsed = reader.result(done.stdout)
    result = JobResult(
        exit_code=code,
        archive=parsed.archive,
        stats=parsed.stats,
        warnings=verdict.warnings,
        details=parsed.details,
    )
    return Ending(status=JobStatus(verdict.status), result=result)


def cancelled(request: CancelRequest, message: str, hints: HintContext, exit_code: int | None = None) -> Ending:
    kind = "stalled" if request.stalled else "cancelled_by_user"
    error = JobError(kind=kind, message=message, hint=hint_for(kind, hints), exit_code=exit_code)
    return Ending(status=JobStatus.CANCELLED, error=error)


def interrupted(request: CancelRequest, code: int, hints: HintContext) -> Ending:
    """borg was stopped by our signal and did not finish its work."""
    if request.shutdown:
        return failed(
            "executor_restarted",
            f"the executor on agent {hints.agent} stopped while the job ran (borg exited with {code})",
            hint_for("executor_restarted", hints),
            exit_code=code,
        )
    return cancelled(request, f"{request.describe()}: borg stopped with exit code {code}", hints, exit_code=code)


def cancelled_before_start(request: CancelRequest, hints: HintContext) -> Ending:
    if request.shutdown:
        return failed(
            "executor_restarted",
            f"the executor on agent {hints.agent} stopped before borg started",
            hint_for("executor_restarted", hints),
        )
    return cancelled(request, f"{request.describe()} before borg started", hints)


def with_archive_tried(ending: Ending, archive: str | None) -> Ending:
    """A failed or cancelled backup names the archive it tried, so its retry can look for it first."""
    if archive is None or ending.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
        return ending
    result = ending.result or JobResult()
    if result.archive:
        return ending
    return msgspec.structs.replace(ending, result=msgspec.structs.replace(result, archive=archive))


def with_warnings(ending: Ending, warnings: list[str], details: dict[str, Any]) -> Ending:
    """A completed job with something to warn about ends `warning`; a failure stays a failure."""
    if ending.status not in (JobStatus.COMPLETED, JobStatus.WARNING):
        return ending
    result = ending.result or JobResult()
    result = msgspec.structs.replace(
        result, warnings=[*result.warnings, *warnings], details={**result.details, **details}
    )
    return Ending(status=JobStatus.WARNING, result=result)


def no_sources(missing: list[str], agent: str) -> Ending:
    return failed(
        "source_not_found",
        f"none of the plan's paths exist on agent {agent}: {', '.join(missing)}; borg did not run",
        f"Fix the plan's paths, or make sure they exist on agent {agent} when the backup runs "
        "(a disk not mounted, a pre-script that did not create them)",
    )


def hook_failed(command: str, problem: str, exit_code: int | None) -> Ending:
    return failed(
        "hook_failed",
        f"pre-script `{command}` {problem}; borg did not run",
        f"Fix the plan's pre-script `{command}` (its output is in the job log) so that it exits 0, "
        "or remove it from the plan",
        exit_code=exit_code,
    )


def final_progress(latest: Progress | None, ending: Ending) -> Progress | None:
    """The latest progress, with the archive's own totals once borg reported them."""
    if latest is None:
        return None
    stats = ending.result.stats if ending.result else {}
    changes: dict[str, object] = {k: stats[k] for k in TOTALS if k in stats}
    if ending.status in (JobStatus.COMPLETED, JobStatus.WARNING):
        # borg's last line is about saving its cache; the job is past that now.
        changes["action"] = "finished"
        if latest.percent is not None:
            # Done is done: no longer an estimate.
            changes |= {"percent": 100.0, "eta_s": 0.0, "estimated": None}
    return msgspec.structs.replace(latest, **changes) if changes else latest

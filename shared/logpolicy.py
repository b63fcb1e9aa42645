"""Which finished jobs keep their log (the `log_save_policy` setting), and what a person is
told when one did not. Pure: the dispatcher applies it when a job ends, the api explains it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.events import JobStatus, LogLine

# The one line a dropped log leaves behind (source `borgflow`), so the job page, the api's
# log and the job's answer can say why.
NOT_KEPT = "log not kept: "
SOURCE = "borgflow"

KEPT_STATUSES: dict[str, frozenset[str]] = {
    "all": frozenset({"completed", "warning", "failed", "cancelled"}),
    "failed_and_warnings": frozenset({"warning", "failed"}),
    "failed_only": frozenset({"failed"}),
}


def discard_reason(policy: str, status: JobStatus | str) -> str | None:
    """Why a job that ended `status` keeps no log under `policy`; None when it keeps it."""
    kept = KEPT_STATUSES.get(policy, KEPT_STATUSES["all"])
    status = str(status)
    if status in kept:
        return None
    which = "failed jobs" if policy == "failed_only" else "failed jobs and jobs with warnings"
    return f"the log_save_policy setting is {policy} (only {which} keep their log) and this job {status}"


def marker(reason: str, at: datetime) -> LogLine:
    return LogLine(at=at, level="info", message=NOT_KEPT + reason, source=SOURCE)


def note(
    last: LogLine | None,
    *,
    ended: bool,
    started: bool = True,
    finished_at: datetime | None,
    now: datetime,
    retention_days: int,
) -> str | None:
    """Why a job's log is not there (None: it is, or the job has not ended).

    `last` is the last line the log stream holds for the job (None: none at all).
    """
    if last is not None:
        return (
            last.message.removeprefix(NOT_KEPT) if last.source == SOURCE and last.message.startswith(NOT_KEPT) else None
        )
    if not ended or not started:
        return None  # running, or it never ran: nothing was logged to keep
    if finished_at is not None and now - finished_at > timedelta(days=retention_days):
        return f"older than the log_retention_days setting ({retention_days} days)"
    return "dropped to keep the logs under the log_max_bytes setting (oldest first), or the job logged nothing"

"""Pure notification decisions: what an event is called, which targets want it, what the message says.

Every event a person may be told about becomes a Notice: its filter key (the name
targets match, `backup.failed`), the project whose targets may hear it, and the
message. Filters are `<type>.<outcome>` patterns: exact (`backup.failed`), `*.failed`,
`backup.*`, `*` (shared.event_filters).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.event_filters import filters_of, wants
from shared.events import (
    JOB_TYPES,
    AgentStateData,
    JobLabels,
    JobStatus,
    PlanStateData,
    ScheduleFireData,
    StorageData,
)
from shared.jobs import JobView

# How many earlier backups of a plan a recovery looks back on (to count the failures).
RECOVERY_LOOKBACK = 50


@dataclass(frozen=True, kw_only=True)
class Notice:
    """One event as people are told about it."""

    key: str
    title: str
    body: str
    project: str | None = None
    """Only targets of this project hear it; None: every target (agents serve every project)."""
    job_id: str | None = None


def event_key(view: JobView, outcome: str) -> str:
    """`<job type>.<outcome>`, the name filters match (`backup.failed`)."""
    return f"{view.type}.{outcome}"


def targets_for(targets: Sequence[dict[str, Any]], notice: Notice) -> list[dict[str, Any]]:
    """The targets (rows with `project` and `events`) that want `notice`."""
    return [
        t
        for t in targets
        if (notice.project is None or t["project"] == notice.project) and wants(filters_of(t["events"]), notice.key)
    ]


def worth_reading(targets: Sequence[dict[str, Any]], outcome: str, labels: JobLabels | None) -> bool:
    """Whether a job event (`started`, an outcome) may be wanted by a target, decided before
    its history is read. A terminal event names its job (`labels`); `job.started` does not,
    so it is worth reading when a target wants `started` of any type."""
    if labels is not None:
        key = f"{labels.type}.{outcome}"
        return any(t["project"] == labels.project and wants(filters_of(t["events"]), key) for t in targets)
    return any(wants(filters_of(t["events"]), f"{job_type}.{outcome}") for t in targets for job_type in JOB_TYPES)


def _size(n: object) -> str:
    if not isinstance(n, int | float):
        return "?"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1000
    return f"{value:.1f} TB"


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC") if at is not None else "never"


def job_notice(view: JobView, outcome: str, page_url: str) -> Notice:
    """A job event (`job.started`, an outcome) as a notice; `view` is the job as of that event."""
    title, body = message(view, page_url, outcome)
    return Notice(key=event_key(view, outcome), title=title, body=body, project=view.project, job_id=view.id)


def message(view: JobView, page_url: str, outcome: str | None = None) -> tuple[str, str]:
    """(title, body) a person can act on without opening anything else; `outcome` names
    the event (`started`), which for an outcome is the status."""
    status = str(view.status)
    what = outcome or status
    where = view.plan_name or view.repository_name or view.agent
    title = f"borgflow: {view.type} {what} — {where}"
    lines = [
        f"Job {view.id}: {view.type} {what}",
        f"Status: {status}",
        f"Agent: {view.agent}",
    ]
    if view.repository_name:
        lines.append(f"Repository: {view.repository_name}")
    if view.plan_name:
        lines.append(f"Plan: {view.plan_name}")
    lines.append(f"Trigger: {view.trigger}")
    if view.duration_s is not None:
        lines.append(f"Duration: {view.duration_s:.1f} s")
    if view.error is not None:
        lines.append(f"Error ({view.error.kind}): {view.error.message}")
        if view.error.exit_code is not None:
            lines.append(f"Exit code: {view.error.exit_code}")
        if view.error.hint:
            lines.append(f"What to do: {view.error.hint}")
    result = view.result
    archive = (result.archive if result is not None else None) or (view.archive if view.type == "backup" else None)
    if archive:
        lines.append(f"Archive: {archive}")
    if result is not None:
        stats = result.stats
        if stats:
            lines.append(
                f"Files: {stats.get('nfiles', '?')}, original {_size(stats.get('original_size'))}, "
                f"compressed {_size(stats.get('compressed_size'))}, "
                f"deduplicated {_size(stats.get('deduplicated_size'))}"
            )
        for w in result.warnings[:10]:
            lines.append(f"Warning: {w}")
    if view.status == JobStatus.FAILED and view.plan_name:
        lines.append("Retry it from the job page, or fix the cause and run the plan again.")
    lines.append(f"Details: {page_url}/queue/{view.id}")
    return title, "\n".join(lines)


def schedule_missed_notice(data: ScheduleFireData, project: str | None, page_url: str) -> Notice:
    name = data.name or data.schedule_id
    lines = [
        f"Schedule: {name} ({data.schedule_id})",
        f"Fire time: {_when(data.fire_at)}",
        f"Reason: {data.reason or 'not given'}",
        "The schedule fires again at its next time; nothing is retried for this one.",
        f"Details: {page_url}/queue" + (f"/{data.job_id}" if data.job_id else ""),
    ]
    return Notice(
        key="schedule.missed",
        title=f"borgflow: schedule {name} missed a run",
        body="\n".join(lines),
        project=project or "default",
        job_id=data.job_id,
    )


def agent_offline_notice(data: AgentStateData, page_url: str) -> Notice:
    lines = [
        f"Agent: {data.agent}",
        "Status: offline (no heartbeat)",
        f"Last seen: {_when(data.last_seen)}",
        "Jobs waiting for it stay queued; jobs it was running fail as agent_lost if it does not come back.",
        f"What to do: check that the machine is up and `borgflow executor --agent {data.agent}` runs on it.",
        f"Details: {page_url}/queue",
    ]
    return Notice(key="agent.offline", title=f"borgflow: agent {data.agent} is offline", body="\n".join(lines))


def plan_overdue_notice(data: PlanStateData, page_url: str) -> Notice:
    name = data.name or data.plan_id
    lines = [
        f"Plan: {name}",
        "Status: overdue (no successful backup for longer than its alert_after_s)",
        f"Last success: {_when(data.last_success_at)}",
    ]
    if data.detail:
        lines.append(data.detail)
    lines += [
        "What to do: look at the plan's recent backups and its schedule; run a backup of it.",
        f"Details: {page_url}/queue",
    ]
    return Notice(
        key="plan.overdue",
        title=f"borgflow: plan {name} is overdue",
        body="\n".join(lines),
        project=data.project,
        job_id=data.job_id,
    )


def storage_notice(data: StorageData, low: bool, page_url: str) -> Notice:
    """`repository.storage_low` or `repository.storage_recovered` as a notice."""
    name = data.name or data.repository_id
    state = "low" if low else "recovered"
    lines = [
        f"Repository: {name}",
        f"Status: storage {state}: {data.free_percent:.1f}% free"
        f" ({_size(data.disk_free)} of {_size(data.disk_total)}), threshold {data.threshold_percent:g}%",
    ]
    if low:
        lines.append(
            "What to do: prune and compact the repository, move it to a larger disk, or free space on its"
            " file system before backups fail with no_space."
        )
    lines.append(f"Details: {page_url}/repositories")
    return Notice(
        key=f"repository.storage_{state}",
        title=f"borgflow: repository {name} storage {state}",
        body="\n".join(lines),
        project=data.project,
        job_id=data.job_id,
    )


def plan_recovered_notice(data: PlanStateData, page_url: str) -> Notice:
    name = data.name or data.plan_id
    lines = [f"Plan: {name}", "Status: recovered (a backup succeeded again)"]
    if data.detail:
        lines.append(data.detail)
    if data.job_id:
        lines += [f"Job: {data.job_id}", f"Finished: {_when(data.last_success_at)}"]
    lines.append(f"Details: {page_url}/queue" + (f"/{data.job_id}" if data.job_id else ""))
    return Notice(
        key="backup.recovered",
        title=f"borgflow: plan {name} recovered",
        body="\n".join(lines),
        project=data.project,
        job_id=data.job_id,
    )


def recovery(previous: Sequence[str], overdue_since_last_success: bool) -> str | None:
    """Why a successful backup is a recovery, in words; None when it is not one.

    `previous` are the statuses of the plan's earlier finished backups, newest first
    (cancelled ones left out): a recovery follows a failure, or an overdue plan.
    """
    failures = 0
    for status in previous:
        if status != JobStatus.FAILED:
            break
        failures += 1
    if failures:
        more = "+" if failures >= RECOVERY_LOOKBACK else ""
        after = f"{failures}{more} failed backup" + ("s" if failures > 1 else "")
        also = " and after the plan was overdue" if overdue_since_last_success else ""
        return f"The backup succeeded after {after}{also}."
    if overdue_since_last_success:
        return "The backup succeeded after the plan was overdue."
    return None

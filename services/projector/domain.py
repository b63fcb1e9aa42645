"""Pure projection decisions: which events of a batch change which rows."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.events import JobEvent, JobStatus
from shared.exceptions import InvalidTransition
from shared.jobs import JobView, evolve

log = logging.getLogger(__name__)


@dataclass
class ArchiveChange:
    repository_id: str
    name: str
    created: datetime | None = None
    job_id: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    removed: bool = False


@dataclass
class VerificationChange:
    """One archive's verdict from a finished check (services/executor/verification.py)."""

    repository_id: str
    archive: str
    result: str
    verified_at: datetime
    job_id: str
    detail: str = ""


@dataclass
class RepositoryFigures:
    """A repository's figures as a finished job measured them (services/executor/measure.py)."""

    repository_id: str
    at: datetime
    job_id: str
    figures: dict[str, Any]


@dataclass
class BatchResult:
    """What one batch of job events does to the read model."""

    changed: dict[str, JobView] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    archives: list[ArchiveChange] = field(default_factory=list)
    figures: list[RepositoryFigures] = field(default_factory=list)
    verifications: list[VerificationChange] = field(default_factory=list)
    skipped: int = 0


def archive_changes(view: JobView) -> list[ArchiveChange]:
    """Archives a finished job created or removed, as its result reports them."""
    if view.status not in (JobStatus.COMPLETED, JobStatus.WARNING) or not view.repository_id:
        return []
    result = view.result
    repo = view.repository_id
    if view.type == "backup" and result is not None and result.archive:
        return [ArchiveChange(repo, result.archive, view.finished_at, view.id, dict(result.stats))]
    if view.type == "delete_archive" and view.archive:
        return [ArchiveChange(repo, view.archive, removed=True)]
    if view.type == "prune" and result is not None:
        pruned = result.details.get("pruned") or []
        return [ArchiveChange(repo, str(name), removed=True) for name in pruned]
    return []


VERDICTS = frozenset({"OK", "CORRUPT", "MISSING"})


def verification_changes(view: JobView) -> list[VerificationChange]:
    """The per-archive verdicts a finished check reports, failed or not (damage fails it)."""
    if view.type != "check" or not view.repository_id or view.finished_at is None or view.result is None:
        return []
    if view.status not in (JobStatus.COMPLETED, JobStatus.WARNING, JobStatus.FAILED):
        return []
    out: list[VerificationChange] = []
    for item in view.result.details.get("verification") or []:
        if isinstance(item, dict) and isinstance(item.get("archive"), str) and item.get("result") in VERDICTS:
            out.append(
                VerificationChange(
                    view.repository_id,
                    item["archive"],
                    str(item["result"]),
                    view.finished_at,
                    view.id,
                    str(item.get("detail") or ""),
                )
            )
    return out


def repository_figures(view: JobView) -> RepositoryFigures | None:
    """The figures a finished job measured of its repository, with the time it finished."""
    if view.status not in (JobStatus.COMPLETED, JobStatus.WARNING) or not view.repository_id:
        return None
    measured = view.result.details.get("repository") if view.result is not None else None
    if not isinstance(measured, dict) or not measured or view.finished_at is None:
        return None
    return RepositoryFigures(view.repository_id, view.finished_at, view.id, dict(measured))


def apply_batch(current: dict[str, JobView], events: list[tuple[JobEvent, int]], checkpoint: int) -> BatchResult:
    """Fold `events` (with their stream sequences) onto the stored views.

    An event at or below the checkpoint, or at or below its job's last applied
    sequence, was applied before: it changes nothing. An event that does not fit
    the job's state is skipped, deterministically, exactly as a replay skips it.
    """
    out = BatchResult()
    views: dict[str, JobView | None] = dict(current)
    for event, seq in events:
        job_id = event.job_id or ""
        view = views.get(job_id)
        if seq <= checkpoint or (view is not None and seq <= view.last_seq):
            continue
        try:
            new = evolve(view, event, seq)
        except InvalidTransition as e:
            out.skipped += 1
            log.warning("skipping event: %s", e, extra={"job_id": job_id, "seq": seq})
            continue
        views[job_id] = new
        if new is None:
            out.deleted.add(job_id)
            out.changed.pop(job_id, None)
        else:
            out.deleted.discard(job_id)
            out.changed[job_id] = new
            if new.status != (view.status if view else None):
                out.archives.extend(archive_changes(new))
                figures = repository_figures(new)
                if figures is not None:
                    out.figures.append(figures)
                out.verifications.extend(verification_changes(new))
    return out

"""Follow-up jobs: what a finished job queues after it.

A successful backup chains its plan's prune, compact and s3_sync (`sync_after`); a
transient failure of a job whose plan has `retry` queues its next attempt.

Pure: the children are derived from the parent's own snapshot, with ids derived
from the parent's id, so deriving them again (after a restart, on another
dispatcher) gives the same jobs, which the stream accepts only once.
"""

from __future__ import annotations

from datetime import timedelta

import msgspec

from shared import ids
from shared.events import TRANSIENT_KINDS, JobSpec, JobStatus
from shared.jobs import JobView


def child_id(parent: JobView, kind: str) -> str:
    return ids.new_id(at=parent.finished_at or parent.created_at, seed=f"{parent.id}:{kind}")


def children_of(spec: JobSpec, view: JobView) -> list[JobSpec]:
    """The jobs to queue after `view` finished, in the order they should run."""
    plan = spec.plan
    if spec.type != "backup" or plan is None or view.status not in (JobStatus.COMPLETED, JobStatus.WARNING):
        return []
    created = view.finished_at or view.created_at
    common = {
        "agent": view.agent,
        "project": spec.project,
        "repository_id": spec.repository_id,
        "plan_id": spec.plan_id,
        "trigger": "chain",
        "requested_by": f"chain after {view.id}",
        "priority": spec.priority,
        "parent_id": view.id,
        "created_at": created,
        "repository": spec.repository,
        "plan": plan,
    }
    out: list[JobSpec] = []
    retention = {k: v for k, v in msgspec.to_builtins(plan.retention).items() if v is not None}
    if plan.prune_after and retention:
        out.append(JobSpec(id=child_id(view, "prune"), type="prune", options=retention, **common))  # type: ignore[arg-type]
    if plan.compact_after:
        out.append(JobSpec(id=child_id(view, "compact"), type="compact", **common))  # type: ignore[arg-type]
    if plan.sync_after is not None:
        # Queued last: a reader, it waits behind the prune and compact queued before it
        # (a waiting writer reserves the repository), so the mirror is of the pruned repository.
        sync = msgspec.to_builtins(plan.sync_after)
        out.append(JobSpec(id=child_id(view, "sync"), type="s3_sync", options=sync, **common))  # type: ignore[arg-type]
    return out


def retry_for(spec: JobSpec, view: JobView) -> JobSpec | None:
    """The next attempt of a job its plan retries after a transient failure, if any.

    The k-th retry waits delay_s * backoff**(k-1) after the failure; a backup's retry
    carries the archive name the failed attempt used, so the executor can tell whether
    that archive was created after all (and not back up twice).
    """
    plan = spec.plan
    error = view.error
    if plan is None or view.status != JobStatus.FAILED or error is None or error.kind not in TRANSIENT_KINDS:
        return None
    if view.cancel_requested:
        return None  # a person asked it to stop: whatever ended it then, it is not run again
    if spec.attempt > plan.retry.max_attempts:
        return None
    failed_at = view.finished_at or view.created_at
    delay = plan.retry.delay_s * plan.retry.backoff ** (spec.attempt - 1)
    tried = view.result.archive if view.result is not None else None
    return msgspec.structs.replace(
        spec,
        id=ids.new_id(at=failed_at, seed=f"{view.id}:retry"),
        created_at=failed_at,
        trigger=spec.trigger,
        requested_by=f"automatic retry of {view.id}",
        retry_of=view.id,
        attempt=spec.attempt + 1,
        archive=tried if spec.type == "backup" else spec.archive,
        message=f"automatic retry {spec.attempt} of {plan.retry.max_attempts} after {error.kind}",
        not_before=failed_at + timedelta(seconds=delay),
    )

"""Time-driven decisions, pure: which agents went silent, which jobs stalled or were lost.

The app feeds these the state folded from the streams and a clock reading, and
appends what they return (each append guarded by compare-and-set).
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.config import SystemSettings
from shared.events import JobError, JobSpec, JobStatus
from shared.jobs import JobView

MISSED_HEARTBEATS = 3


@dataclass(frozen=True)
class AgentSeen:
    at: float  # last heartbeat, epoch seconds
    interval_s: float


def online_agents(seen: dict[str, AgentSeen], now: float) -> set[str]:
    """Agents whose last heartbeat is younger than 3 of their intervals."""
    return {a for a, s in seen.items() if now - s.at < MISSED_HEARTBEATS * s.interval_s}


def agent_transitions(seen: dict[str, AgentSeen], announced: dict[str, bool], now: float) -> dict[str, bool]:
    """Agents whose online state differs from what was last announced: agent -> online now."""
    online = online_agents(seen, now)
    out: dict[str, bool] = {}
    for agent in seen:
        is_online = agent in online
        if announced.get(agent) != is_online:
            out[agent] = is_online
    return out


def lost_jobs(
    views: list[JobView], seen: dict[str, AgentSeen], limits: SystemSettings, now: float
) -> list[tuple[JobView, JobError]]:
    """Sent or running jobs whose agent has been silent past the grace period."""
    out: list[tuple[JobView, JobError]] = []
    for v in views:
        if v.status not in (JobStatus.SENT, JobStatus.RUNNING):
            continue
        s = seen.get(v.agent)
        silent_since = s.at + MISSED_HEARTBEATS * s.interval_s if s else None
        if silent_since is None or now - silent_since < limits.agent_lost_after_s:
            continue
        out.append(
            (
                v,
                JobError(
                    kind="agent_lost",
                    message=f"agent {v.agent} stopped sending heartbeats while the job was {v.status}",
                    hint=f"Check that `borgflow executor --agent {v.agent}` is running and can reach NATS; "
                    "then retry the job.",
                ),
            )
        )
    return out


def stall_timeout(spec: JobSpec | None, limits: SystemSettings) -> float:
    if spec is not None and spec.plan is not None:
        return float(spec.plan.stall_timeout_s)
    return float(limits.stall_timeout_s)


def stalled_jobs(
    views: list[JobView],
    specs: dict[str, JobSpec],
    activity_at: dict[str, float],
    limits: SystemSettings,
    now: float,
) -> list[tuple[JobView, float]]:
    """Running jobs with no progress for their stall timeout: (job, seconds silent)."""
    out: list[tuple[JobView, float]] = []
    for v in views:
        if v.status != JobStatus.RUNNING or v.cancel_requested or v.started_at is None:
            continue
        last = max(v.started_at.timestamp(), activity_at.get(v.id, 0.0))
        silent = now - last
        if silent >= stall_timeout(specs.get(v.id), limits):
            out.append((v, silent))
    return out

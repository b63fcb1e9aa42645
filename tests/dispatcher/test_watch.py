"""Time-driven decisions: silent agents, lost and stalled jobs (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from services.dispatcher.watch import AgentSeen, agent_transitions, lost_jobs, online_agents, stalled_jobs
from shared import events as ev
from shared.config import SystemSettings
from shared.jobs import JobView

T = datetime(2026, 11, 23, 12, tzinfo=UTC)


def view(status: str, agent: str = "a1", started: datetime | None = T, **kw: object) -> JobView:
    return JobView(
        id=f"j-{status}",
        type="backup",
        status=ev.JobStatus(status),
        agent=agent,
        created_at=T,
        started_at=started,
        **kw,
    )  # type: ignore[arg-type]


def test_an_agent_is_offline_after_three_missed_heartbeats() -> None:
    seen = {"a1": AgentSeen(at=100.0, interval_s=5), "a2": AgentSeen(at=90.0, interval_s=5)}
    assert online_agents(seen, 104.0) == {"a1", "a2"}
    assert online_agents(seen, 106.0) == {"a1"}
    assert agent_transitions(seen, {"a1": True, "a2": True}, 106.0) == {"a2": False}
    assert agent_transitions(seen, {"a2": False}, 106.0) == {"a1": True}


def test_jobs_are_lost_only_after_the_grace_period() -> None:
    seen = {"a1": AgentSeen(at=100.0, interval_s=5)}  # silent from 115
    limits = SystemSettings(agent_lost_after_s=60)
    jobs = [view("running"), view("sent"), view("queued")]
    assert lost_jobs(jobs, seen, limits, 170.0) == []
    lost = lost_jobs(jobs, seen, limits, 176.0)
    assert [(v.status, e.kind) for v, e in lost] == [("running", "agent_lost"), ("sent", "agent_lost")]
    assert "borgflow executor --agent a1" in lost[0][1].hint


def test_stall_uses_the_plan_timeout_and_the_last_progress() -> None:
    plan = ev.PlanRef(id="p", name="p", repository_id="r", stall_timeout_s=60)
    job = view("running")
    spec = ev.JobSpec(id=job.id, type="backup", agent="a1", created_at=T, plan=plan)
    start = T.timestamp()
    assert stalled_jobs([job], {job.id: spec}, {}, SystemSettings(), start + 59) == []
    assert [v.id for v, _ in stalled_jobs([job], {job.id: spec}, {}, SystemSettings(), start + 61)] == [job.id]
    # Progress 30 s in resets the clock; a job already asked to stop is left alone.
    assert stalled_jobs([job], {job.id: spec}, {job.id: start + 30}, SystemSettings(), start + 61) == []
    asked = msgspec.structs.replace(job, cancel_requested=True)
    assert stalled_jobs([asked], {job.id: spec}, {}, SystemSettings(), start + 600) == []
    # Without a plan, the system's stall timeout applies.
    assert stalled_jobs([job], {}, {}, SystemSettings(stall_timeout_s=1800), start + 61) == []
    assert stalled_jobs([job], {}, {}, SystemSettings(stall_timeout_s=1800), start + 1801)

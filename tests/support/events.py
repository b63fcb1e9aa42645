"""Building job histories for tests."""

from __future__ import annotations

from nats.js import JetStreamContext

from shared import bus, ids
from shared import events as ev


def spec(job_type: str = "backup", agent: str = "a1", **kw: object) -> ev.JobSpec:
    job_id = ids.new_id()
    base: dict[str, object] = {"id": job_id, "type": job_type, "agent": agent, "created_at": ev.utcnow()}
    base.update(kw)
    return ev.JobSpec(**base)  # type: ignore[arg-type]


async def run_history(js: JetStreamContext, s: ev.JobSpec, outcome: ev.Event | None = None) -> int:
    """queued -> sent -> started -> outcome (completed by default); returns the last sequence."""
    j = s.id
    await bus.publish(js, ev.JobQueued(job_id=j, data=s))
    await bus.publish(js, ev.JobSent(job_id=j, data=ev.SentData(agent=s.agent)))
    await bus.publish(js, ev.JobStarted(job_id=j, data=ev.StartedData(agent=s.agent)))
    ack = await bus.publish(js, outcome or ev.JobCompleted(job_id=j))
    return int(ack.seq)

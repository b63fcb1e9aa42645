"""Checking the invariants of DESIGN.md from the event log itself."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import msgspec
from nats.js import JetStreamContext

from shared import events as ev
from shared.events import TERMINAL, WRITING_TYPES, JobStatus
from shared.exceptions import InvalidTransition
from shared.jobs import JobView, evolve


@dataclass
class Audit:
    jobs: dict[str, JobView] = field(default_factory=dict)
    queued_order: list[str] = field(default_factory=list)
    sent_order: list[str] = field(default_factory=list)
    sends: Counter[str] = field(default_factory=Counter)
    starts: Counter[str] = field(default_factory=Counter)
    terminals: Counter[str] = field(default_factory=Counter)
    max_active: int = 0
    max_per_agent: int = 0
    max_writers_per_repo: int = 0
    refused: int = 0

    def unfinished(self) -> list[str]:
        return [j for j, v in self.jobs.items() if v.status not in TERMINAL]


async def read_jobs_stream(js: JetStreamContext) -> list[tuple[ev.JobEvent, int]]:
    info = await js.stream_info("BORGFLOW_JOBS")
    out: list[tuple[ev.JobEvent, int]] = []
    if not info.state.messages:
        return out
    sub = await js.subscribe("borgflow.jobs.>", stream="BORGFLOW_JOBS", ordered_consumer=True)
    try:
        while True:
            msg = await sub.next_msg(timeout=5)
            seq = msg.metadata.sequence.stream
            try:
                e = ev.decode(msg.data)
            except msgspec.MsgspecError:
                e = None
            if isinstance(e, ev.JobEvent):  # type: ignore[arg-type, misc]
                out.append((e, seq))
            if seq >= info.state.last_seq:
                return out
    finally:
        await sub.unsubscribe()


async def audit(js: JetStreamContext) -> Audit:
    """Replay BORGFLOW_JOBS and measure what the invariants bound."""
    a = Audit()
    active: dict[str, JobView] = {}
    for event, seq in await read_jobs_stream(js):
        job_id = event.job_id or ""
        try:
            new = evolve(a.jobs.get(job_id), event, seq)
        except InvalidTransition:
            a.refused += 1
            continue
        if new is None:
            a.jobs.pop(job_id, None)
            continue
        a.jobs[job_id] = new
        if isinstance(event, ev.JobQueued):
            a.queued_order.append(job_id)
        if isinstance(event, ev.JobSent):
            a.sends[job_id] += 1
            a.sent_order.append(job_id)
        if isinstance(event, ev.JobStarted):
            a.starts[job_id] += 1
        if new.status in TERMINAL:
            a.terminals[job_id] += 1
        if new.status in (JobStatus.SENT, JobStatus.RUNNING):
            active[job_id] = new
        else:
            active.pop(job_id, None)
        a.max_active = max(a.max_active, len(active))
        per_agent = Counter(v.agent for v in active.values())
        a.max_per_agent = max([a.max_per_agent, *per_agent.values()])
        writers = Counter(v.repository_id for v in active.values() if v.repository_id and v.type in WRITING_TYPES)
        a.max_writers_per_repo = max([a.max_writers_per_repo, *writers.values()])
    return a

"""A successful backup queues its plan's prune and compact as children, once, whatever restarts."""

from __future__ import annotations

import asyncio

from nats.js import JetStreamContext

from services.dispatcher.app import run as run_dispatcher
from services.dispatcher.chains import children_of
from shared import bus
from shared import events as ev
from shared.config import Settings
from shared.jobs import fold
from shared.testing import NatsServer
from tests.support.audit import audit
from tests.support.events import run_history, spec
from tests.support.waiting import eventually

PLAN = ev.PlanRef(
    id="p1",
    name="nightly",
    repository_id="r1",
    paths=["/srv"],
    prune_after=True,
    compact_after=True,
    retention=ev.Retention(keep_daily=7, keep_weekly=4),
)
REPO = ev.RepositoryRef(id="r1", name="main", location="/srv/repo", agent="a1")


def test_children_follow_only_a_successful_backup() -> None:
    s = spec("backup", plan=PLAN, plan_id="p1", repository=REPO, repository_id="r1")
    history = [
        (ev.JobQueued(job_id=s.id, data=s), 1),
        (ev.JobSent(job_id=s.id, data=ev.SentData(agent="a1")), 2),
        (ev.JobStarted(job_id=s.id, data=ev.StartedData(agent="a1")), 3),
    ]
    done = fold([*history, (ev.JobWarning(job_id=s.id), 4)])
    failed = fold([*history, (ev.JobFailed(job_id=s.id), 4)])
    assert done is not None and failed is not None
    kids = children_of(s, done)
    assert [(k.type, k.parent_id, k.trigger) for k in kids] == [("prune", s.id, "chain"), ("compact", s.id, "chain")]
    assert kids[0].options == {"keep_daily": 7, "keep_weekly": 4}
    assert children_of(s, done) == kids, "children are derived deterministically"
    assert children_of(s, failed) == []


async def test_children_are_queued_once_by_two_dispatchers_and_a_restart(
    nats_server: NatsServer, js: JetStreamContext
) -> None:
    settings = Settings(nats_url=nats_server.url)
    stop = asyncio.Event()
    first = [asyncio.create_task(run_dispatcher(settings, stop)) for _ in range(2)]
    parent = spec("backup", plan=PLAN, plan_id="p1", repository=REPO, repository_id="r1")
    await run_history(js, parent)

    async def children() -> list[str] | None:
        a = await audit(js)
        kids = [j for j, v in a.jobs.items() if v.parent_id == parent.id]
        return kids if len(kids) == 2 else None

    kids = await eventually(children, what="two chained jobs")
    stop.set()
    await asyncio.gather(*first)
    again = asyncio.Event()
    restarted = asyncio.create_task(run_dispatcher(settings, again))
    # The restarted dispatcher sends this ping only once it has replayed the whole stream,
    # and it queues due chains before it sends anything: after the send, it had its chance.
    hb = ev.AgentHeartbeat(data=ev.HeartbeatData(agent="a9", interval_s=60))
    await js.publish("borgflow.agents.a9.heartbeat", ev.encode(hb))
    ping = spec("ping", agent="a9")
    await bus.publish(js, ev.JobQueued(job_id=ping.id, data=ping))

    async def ping_sent() -> bool:
        view = await bus.load_job(js, ping.id)
        return view is not None and view.status == "sent"

    await eventually(ping_sent, what="the restarted dispatcher caught up")
    again.set()
    await restarted
    a = await audit(js)
    assert sorted(j for j, v in a.jobs.items() if v.parent_id == parent.id) == sorted(kids)
    assert sum(1 for j in a.queued_order if a.jobs[j].parent_id == parent.id) == 2
    assert a.refused == 0, "a second job.queued for a child was appended"

"""The incremental queue decides exactly as the reference `decide()`: for any sequence of
arrivals, ends, cancels, requeues, agents coming and going, backoffs running out and limits
changing, the same jobs start and every waiting job is told the same reason."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.dispatcher.domain import Job, decide
from services.dispatcher.queue import JobQueue
from shared.config import SystemSettings
from shared.jobs import Waiting

AGENTS = ["a1", "a2", "a3"]
REPOS = ["r1", "r2", "r1", None]
TYPES = ["backup", "backup", "restore", "check", "prune", "prune", "restore_check", "ping"]

arrive = st.tuples(
    st.just("arrive"),
    st.sampled_from(AGENTS),
    st.sampled_from(REPOS),
    st.sampled_from(TYPES),
    st.sampled_from(["manual", "schedule"]),
    st.integers(0, 2),  # priority
    st.sampled_from([None, None, None, 5.0, 20.0]),  # not_before
    st.booleans(),  # of a plan
)
limits_st = st.builds(
    SystemSettings,
    max_concurrent_jobs=st.integers(1, 6),
    agent_slots=st.integers(1, 2),
    max_concurrent_manual_backups=st.none() | st.integers(1, 2),
    max_concurrent_scheduled_backups=st.none() | st.integers(1, 2),
    max_concurrent_scheduled_checks=st.none() | st.integers(1, 2),
)
ops = st.one_of(
    arrive,
    arrive,
    arrive,
    arrive,
    st.tuples(st.just("finish"), st.integers(0, 100)),
    st.tuples(st.just("cancel"), st.integers(0, 100)),
    st.tuples(st.just("requeue"), st.integers(0, 100)),
    st.tuples(st.just("online"), st.frozensets(st.sampled_from(AGENTS)) | st.none()),
    st.tuples(st.just("tick"), st.sampled_from([1.0, 6.0, 30.0])),
    st.tuples(st.just("limits"), limits_st),
)


@settings(max_examples=400, deadline=None)
@given(limits=limits_st, ops=st.lists(ops, min_size=20, max_size=80))
def test_the_incremental_queue_decides_as_decide_does(limits: SystemSettings, ops: list[tuple[object, ...]]) -> None:
    online: set[str] | None = set(AGENTS)
    now = 0.0
    queued: dict[str, Job] = {}
    active: dict[str, Job] = {}
    q = JobQueue(limits)
    n = 0
    for op in ops:
        kind = op[0]
        if kind == "arrive":
            _, agent, repo, type_, trigger, prio, not_before, planned = op
            plan = f"p-{repo}" if planned and type_ == "backup" else None
            job = Job(
                id=f"j{n:03d}",
                type=str(type_),
                agent=str(agent),
                repository_id=repo,  # type: ignore[arg-type]
                plan_id=plan,
                trigger=str(trigger),
                priority=int(prio),  # type: ignore[call-overload]
                order=n,
                not_before=None if not_before is None else now + float(not_before),  # type: ignore[arg-type]
            )
            n += 1
            queued[job.id] = job
            q.add(job)
        elif kind in ("finish", "requeue") and active:
            job_id = sorted(active)[int(op[1]) % len(active)]  # type: ignore[call-overload]
            job = active.pop(job_id)
            if kind == "requeue":  # back to its old place
                queued[job_id] = job
                q.requeue(job_id)
            else:
                q.remove(job_id)
        elif kind == "cancel" and queued:
            job_id = sorted(queued)[int(op[1]) % len(queued)]  # type: ignore[call-overload]
            del queued[job_id]
            q.remove(job_id)
        elif kind == "online":
            online = None if op[1] is None else set(op[1])  # type: ignore[arg-type]
        elif kind == "tick":
            now += float(op[1])  # type: ignore[arg-type]
        elif kind == "limits":
            limits = op[1]  # type: ignore[assignment]
            q.set_limits(limits)

        want = decide(list(queued.values()), list(active.values()), limits, online, now)
        got = q.round(online, now)
        assert got == want.start, f"after {op}: incremental started {got}, decide {want.start}"
        for job_id in got:
            active[job_id] = queued.pop(job_id)
        assert set(q.queued) == set(queued) and set(q.active) == set(active)
        assert q.reasons(online, now) == want.waiting, f"after {op}"


def test_a_round_with_no_free_slot_looks_at_nothing() -> None:
    """With every global slot taken, a round costs nothing, however long the queue."""
    q = JobQueue(SystemSettings(max_concurrent_jobs=1, agent_slots=10))
    q.activate(Job(id="running", type="ping", agent="a", order=0))
    for i in range(1, 20_001):
        q.add(Job(id=f"j{i:05d}", type="ping", agent="a", order=i))
    assert q.round({"a"}, 0.0) == []
    assert q._stale  # the candidates were not even worked out
    q.remove("running")
    assert q.round({"a"}, 0.0) == ["j00001"]
    assert q.reason("j00002", {"a"}, 0.0) is not None


def test_an_agent_going_offline_frees_the_repositories_its_writers_held() -> None:
    limits = SystemSettings(max_concurrent_jobs=5, agent_slots=1)
    q = JobQueue(limits)
    q.activate(Job(id="busy", type="ping", agent="a1", order=0))
    q.add(Job(id="w", type="prune", agent="a1", repository_id="r", order=1))  # waits for a1, holds r
    q.add(Job(id="j", type="prune", agent="a2", repository_id="r", order=2))
    assert q.round({"a1", "a2"}, 0.0) == []
    assert "held for job w" in (q.reason("j", {"a1", "a2"}, 0.0) or Waiting(reason="", detail="")).detail
    assert q.round({"a2"}, 0.0) == ["j"]  # a1 went away: w could not run, so it holds nothing


def test_a_retry_backing_off_holds_its_repository_once_it_may_start() -> None:
    limits = SystemSettings(max_concurrent_jobs=5, agent_slots=1)
    q = JobQueue(limits)
    q.activate(Job(id="busy", type="ping", agent="a1", order=0))
    q.add(Job(id="w", type="prune", agent="a1", repository_id="r", order=1, not_before=10.0))
    q.add(Job(id="j", type="prune", agent="a2", repository_id="r", order=2))
    assert q.round({"a1", "a2"}, 0.0) == ["j"]  # the retry backs off: it holds nothing yet
    q.remove("j")
    q.add(Job(id="k", type="prune", agent="a2", repository_id="r", order=3))
    assert q.round({"a1", "a2"}, 11.0) == []  # its backoff is over: it holds r again

"""The pure "what may start now" decision: limits, order, reasons, no starvation."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from services.dispatcher.domain import Job, class_limit, decide, queue_order
from shared.config import SystemSettings

LIMITS = SystemSettings()


def job(i: int, agent: str = "a1", repo: str | None = None, type_: str = "backup", **kw: object) -> Job:
    return Job(id=f"j{i:03d}", type=type_, agent=agent, repository_id=repo, order=i, **kw)  # type: ignore[arg-type]


def test_fifo_within_the_global_limit() -> None:
    queued = [job(i, agent=f"a{i}", repo=f"r{i}") for i in range(6)]
    d = decide(queued, [], SystemSettings(max_concurrent_jobs=4))
    assert d.start == ["j000", "j001", "j002", "j003"]
    assert d.waiting["j004"].reason == "global_limit" and d.waiting["j004"].detail.startswith("4 of 4 jobs")


def test_priority_goes_first() -> None:
    queued = [job(1, agent="x", repo="r1"), job(2, agent="y", repo="r2", priority=5)]
    assert decide(queued, [], SystemSettings(max_concurrent_jobs=1)).start == ["j002"]


def test_busy_agent_does_not_block_unrelated_jobs() -> None:
    active = [job(0, agent="a1", repo="r0")]
    queued = [job(1, agent="a1", repo="r1"), job(2, agent="a2", repo="r2")]
    d = decide(queued, active, LIMITS)
    assert d.start == ["j002"]
    assert d.waiting["j001"].reason == "agent_busy"


def test_one_writer_per_repository_but_reads_overlap() -> None:
    limits = SystemSettings(agent_slots=10, max_concurrent_jobs=10)
    active = [job(0, agent="a1", repo="r", type_="restore")]
    queued = [
        job(1, agent="a2", repo="r", type_="restore_check"),
        job(2, agent="a3", repo="r", type_="prune"),
        job(3, agent="a4", repo="r", type_="restore"),
    ]
    d = decide(queued, active, limits)
    # The read overlaps the running read; the prune waits for both and holds the
    # repository, so the later restore does not overtake it for ever.
    assert d.start == ["j001"]
    assert d.waiting["j002"].reason == "repository_busy"
    assert d.waiting["j003"].reason == "repository_busy" and "held for job j002" in d.waiting["j003"].detail


def test_behind_plan_and_class_limits() -> None:
    limits = SystemSettings(max_concurrent_scheduled_backups=1, agent_slots=5)
    active = [job(0, agent="a", repo="r0", trigger="schedule")]
    queued = [
        job(1, agent="a", repo="r1", trigger="schedule"),
        job(2, agent="a", repo="r2", trigger="manual"),
        job(3, agent="b", repo="r0", plan_id="p0"),
        job(4, agent="c", repo="r4", plan_id="p1"),
        job(5, agent="c", repo="r4", plan_id="p1"),
    ]
    d = decide(queued, active, limits)
    assert d.waiting["j001"].reason == "class_limit"
    assert "j002" in d.start
    assert d.waiting["j003"].reason == "repository_busy"
    assert "j004" in d.start and d.waiting["j005"].reason == "behind_plan"


def test_offline_agent() -> None:
    d = decide([job(1, agent="gone", repo="r")], [], LIMITS, online={"local"})
    assert d.start == [] and d.waiting["j001"].reason == "agent_offline"


def test_a_writer_that_cannot_run_does_not_hold_its_repository() -> None:
    """A backup waiting for an offline (or never seen) agent, or for its retry backoff, must not
    keep a backup of the same repository on a live agent waiting for ever."""
    for blocked_writer in (
        job(1, agent="gone", repo="r"),  # its agent is offline
        job(1, agent="a1", repo="r", not_before=100.0),  # backing off
    ):
        live = job(2, agent="a2", repo="r")
        d = decide([blocked_writer, live], [], LIMITS, online={"a1", "a2"}, now=10.0)
        assert d.start == ["j002"], d.waiting
    # A writer that could run, but waits for its busy agent, still holds the repository.
    busy = decide([job(1, agent="a1", repo="r"), job(2, agent="a2", repo="r")], [job(0, agent="a1")], LIMITS)
    assert busy.start == [] and "held for job j001" in busy.waiting["j002"].detail


def test_reasons_are_said_after_the_round() -> None:
    """A job held back by its class limit is told about the agent that filled up after it."""
    limits = SystemSettings(agent_slots=1, max_concurrent_manual_backups=1, max_concurrent_jobs=5)
    active = [job(0, agent="b", repo="r0")]  # a manual backup running elsewhere
    queued = [job(1, agent="a", repo="r1"), job(2, agent="a", repo="r2", type_="check")]
    d = decide(queued, active, limits)
    assert d.start == ["j002"]
    assert d.waiting["j001"].reason == "agent_busy"  # not class_limit: the agent is what it waits for now


# --------------------------------------------------------------------------- properties

AGENTS = ["a1", "a2", "a3"]
REPOS = ["r1", "r2", "r3", None]
TYPES = ["backup", "restore", "check", "prune", "restore_check", "ping"]
TRIGGERS = ["manual", "schedule"]

op = st.one_of(
    st.tuples(
        st.just("arrive"),
        st.sampled_from(AGENTS),
        st.sampled_from(REPOS),
        st.sampled_from(TYPES),
        st.sampled_from(TRIGGERS),
        st.integers(0, 2),
    ),
    st.tuples(st.just("finish"), st.integers(0, 50)),
    st.tuples(st.just("cancel"), st.integers(0, 50)),
)
limits_st = st.builds(
    SystemSettings,
    max_concurrent_jobs=st.integers(1, 5),
    agent_slots=st.integers(1, 3),
    max_concurrent_manual_backups=st.none() | st.integers(1, 3),
    max_concurrent_scheduled_backups=st.none() | st.integers(1, 3),
    max_concurrent_scheduled_checks=st.none() | st.integers(1, 2),
)


def check_limits(active: list[Job], limits: SystemSettings) -> None:
    assert len(active) <= limits.max_concurrent_jobs
    for agent, n in Counter(j.agent for j in active).items():
        assert n <= limits.agent_slots, agent
    for cls, n in Counter(j.job_class for j in active if j.job_class).items():
        limit = class_limit(limits, cls)
        assert limit is None or n <= limit, cls
    for repo in {j.repository_id for j in active if j.repository_id}:
        on_repo = [j for j in active if j.repository_id == repo]
        writers = [j for j in on_repo if j.writes]
        assert len(writers) <= 1 and (not writers or len(on_repo) == 1), repo


def could_start_alone(candidate: Job, active: list[Job], limits: SystemSettings) -> bool:
    d = decide([candidate], active, limits)
    return d.start == [candidate.id]


@settings(max_examples=300, deadline=None)
@given(limits=limits_st, ops=st.lists(op, min_size=1, max_size=60))
def test_random_arrivals_finishes_and_cancels(limits: SystemSettings, ops: list[tuple[object, ...]]) -> None:
    queued: list[Job] = []
    active: list[Job] = []
    n = 0
    for o in ops:
        if o[0] == "arrive":
            _, agent, repo, type_, trigger, prio = o
            plan = f"p-{repo}" if type_ == "backup" and repo else None
            queued.append(
                Job(
                    id=f"j{n:03d}",
                    type=str(type_),
                    agent=str(agent),
                    repository_id=repo,  # type: ignore[arg-type]
                    plan_id=plan,
                    trigger=str(trigger),
                    priority=int(prio),
                    order=n,
                )  # type: ignore[call-overload]
            )
            n += 1
        elif o[0] == "finish" and active:
            active.pop(int(o[1]) % len(active))  # type: ignore[call-overload]
        elif o[0] == "cancel" and queued:
            queued.pop(int(o[1]) % len(queued))  # type: ignore[call-overload]
        d = decide(queued, active, limits)
        started = [j for j in queued if j.id in d.start]
        active += started
        queued = [j for j in queued if j.id not in d.start]
        check_limits(active, limits)
        assert set(d.waiting) == {j.id for j in queued}, "every waiting job says why"
        ordered = queue_order(queued)
        for i, w in enumerate(ordered):
            # No starvation of unrelated work: a job that could start on its own is
            # only held back by an earlier job sharing its agent, repository or plan.
            if could_start_alone(w, active, limits):
                earlier = ordered[:i]
                assert any(
                    e.agent == w.agent
                    or (w.repository_id and e.repository_id == w.repository_id)
                    or (w.plan_id and e.plan_id == w.plan_id)
                    for e in earlier
                ), f"{w} could run but waits: {d.waiting[w.id]}"
        # Order: nothing that started is later in the queue than a job that waits only
        # for a free global slot.
        global_waiters = [j for j in ordered if d.waiting[j.id].reason == "global_limit"]
        if global_waiters:
            first = queue_order(global_waiters)[0]
            assert all(queue_order([s, first])[0] is s for s in started)

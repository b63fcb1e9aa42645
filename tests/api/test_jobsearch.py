"""The typed search `q` (pure: services/api/jobsearch.py) and a job's timeline folded from its
events (pure: services/api/job_timeline.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.api import job_timeline
from services.api.jobsearch import Search, SearchError, parse
from shared.events import (
    CancelRequestedData,
    JobCancelled,
    JobCancelRequested,
    JobError,
    JobFailed,
    JobQueued,
    JobResult,
    JobSent,
    JobSpec,
    JobStarted,
    OutcomeData,
    PlanRef,
    RepositoryRef,
    SentData,
    StartedData,
)
from shared.jobs import Waiting


def test_typed_terms_and_free_words() -> None:
    s = parse(
        'type:backup status:failed,cancelled agent:web-1 repo:home plan:"db nightly" trigger:schedule exit:2 photo'
    )
    assert s == Search(
        types=("backup",),
        statuses=("failed", "cancelled"),
        agents=("web-1",),
        repos=("home",),
        plans=("db nightly",),
        triggers=("schedule",),
        exit_codes=(2,),
        words=("photo",),
    )


def test_repeated_keys_add_up_and_words_keep_their_order() -> None:
    s = parse('STATUS:Failed status:failed status:queued  "two words"  x  Repository:r1')
    assert s.statuses == ("failed", "queued")
    assert s.words == ("two words", "x")
    assert s.repos == ("r1",)


@pytest.mark.parametrize("text", [None, "", "   "])
def test_nothing_asks_for_nothing(text: str | None) -> None:
    assert parse(text).empty


@pytest.mark.parametrize(
    ("text", "term", "says"),
    [
        ("colour:red", "colour:red", "unknown key 'colour'"),
        ("type:lunch", "type:lunch", "unknown value 'lunch'"),
        ("backup status:", "status:", "needs a value"),
        ("status:,", "status:,", "needs a value"),
        ("exit:two", "exit:two", "not an exit code"),
        ("exit:999", "exit:999", "not an exit code"),
        ("trigger:whim", "trigger:whim", "unknown value 'whim'"),
    ],
)
def test_a_bad_term_is_named(text: str, term: str, says: str) -> None:
    with pytest.raises(SearchError) as info:
        parse(text)
    assert info.value.term == term
    assert says in str(info.value) and str(info.value).startswith("q: ")


def test_too_many_terms() -> None:
    with pytest.raises(SearchError, match="more than 32 terms"):
        parse(" ".join(["w"] * 33))


T0 = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)


def _spec(**fields: object) -> JobSpec:
    base: dict[str, object] = {"id": "j1", "type": "backup", "agent": "web-1", "created_at": T0}
    base.update(fields)
    return JobSpec(**base)  # type: ignore[arg-type]


def test_timeline_names_who_did_what() -> None:
    repo = RepositoryRef(id="r1", name="home", location="/srv/home", agent="web-1", has_passphrase=True)
    plan = PlanRef(id="p1", name="nightly", repository_id="r1", paths=["/home"])
    events = [
        JobQueued(
            job_id="j1",
            at=T0,
            data=_spec(requested_by="schedule nightly", trigger="schedule", repository=repo, plan=plan),
        ),
        JobSent(job_id="j1", at=T0 + timedelta(seconds=1), data=SentData(agent="web-1")),
        JobStarted(job_id="j1", at=T0 + timedelta(seconds=2), data=StartedData(agent="web-1", host="web-1.lan")),
        JobCancelRequested(job_id="j1", at=T0 + timedelta(seconds=3), data=CancelRequestedData(by="alice")),
        JobCancelled(
            job_id="j1",
            at=T0 + timedelta(seconds=4),
            data=OutcomeData(error=JobError(kind="cancelled_by_user", message="stopped", exit_code=143)),
        ),
    ]
    entries = job_timeline.timeline(events)  # type: ignore[arg-type]
    assert [(e.event, e.status, e.actor.kind, e.actor.name) for e in entries] == [
        ("job.queued", "queued", "scheduler", "schedule nightly"),
        ("job.sent", "sent", "dispatcher", "dispatcher"),
        ("job.started", "running", "executor", "web-1"),
        ("job.cancel_requested", "running", "token", "alice"),
        ("job.cancelled", "cancelled", "executor", "web-1"),
    ]
    assert entries[2].detail == "started on web-1 (web-1.lan)"
    assert entries[-1].exit_code == 143
    config = job_timeline.configuration(events)  # type: ignore[arg-type]
    assert config["repository"]["location"] == "/srv/home" and config["repository"]["has_passphrase"] is True
    assert config["plan"]["paths"] == ["/home"] and "'passphrase'" not in str(config)


def test_timeline_of_a_retry_and_a_lost_agent_and_why_it_waits() -> None:
    retry = _spec(
        id="j2", requested_by="automatic retry of j1", retry_of="j1", attempt=2, message="automatic retry 1 of 3"
    )
    lost = [
        JobQueued(job_id="j2", at=T0, data=retry),
        JobSent(job_id="j2", at=T0, data=SentData(agent="web-1")),
        JobStarted(job_id="j2", at=T0, data=StartedData(agent="web-1")),
        JobFailed(job_id="j2", at=T0, data=OutcomeData(error=JobError(kind="agent_lost", message="gone"))),
    ]
    entries = job_timeline.timeline(lost)  # type: ignore[arg-type]
    assert entries[0].actor.kind == "dispatcher" and "attempt 2, retry of j1" in entries[0].detail
    assert (entries[-1].actor.kind, entries[-1].detail) == ("dispatcher", "agent_lost: gone")

    by_token = [
        JobQueued(job_id="j3", at=T0, data=_spec(id="j3", requested_by="ops")),
        JobCancelled(
            job_id="j3",
            at=T0,
            data=OutcomeData(error=JobError(kind="cancelled_by_user", message="cancelled by ops while queued")),
        ),
    ]
    assert [e.actor.name for e in job_timeline.timeline(by_token)] == ["ops", "ops"]  # type: ignore[arg-type]

    now = T0 + timedelta(minutes=5)
    waiting = Waiting(reason="agent_busy", detail="agent web-1 runs job j9", position=2)
    queued = job_timeline.timeline([lost[0]], waiting, now)  # type: ignore[list-item]
    assert (queued[-1].event, queued[-1].reason, queued[-1].detail, queued[-1].at) == (
        "waiting",
        "agent_busy",
        "#2: agent web-1 runs job j9",
        now,
    )
    done = JobFailed(
        job_id="j2",
        at=T0,
        data=OutcomeData(result=JobResult(exit_code=2), error=JobError(kind="borg_error", message="x")),
    )
    assert job_timeline.timeline([*lost[:3], done])[-1].exit_code == 2  # type: ignore[list-item]

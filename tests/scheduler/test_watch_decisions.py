"""Stale scheduled checks and overdue plans, decided without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.scheduler.domain import (
    PlanHealth,
    WaitingCheck,
    duration,
    is_overdue,
    is_stale,
    overdue_msg_id,
    overdue_raised,
    stale_error,
)
from shared.events import JobStatus
from shared.jobs import Waiting

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


OFFLINE = Waiting(reason="agent_offline", detail="agent a1 is offline")


def check(**kw: object) -> WaitingCheck:
    base: dict[str, object] = {
        "job_id": "j1",
        "created_at": NOW - 20 * MIN,
        "repository_name": "r1",
        "agent": "a1",
        "waiting": OFFLINE,
    }
    base.update(kw)
    return WaitingCheck(**base)  # type: ignore[arg-type]


def test_a_check_waiting_15_minutes_on_an_idle_repository_is_stale() -> None:
    assert is_stale(check(), NOW)
    assert not is_stale(check(created_at=NOW - 14 * MIN), NOW)


def test_a_check_behind_a_running_job_is_not_stale() -> None:
    assert not is_stale(check(repository_busy=True), NOW)


def test_the_wait_counts_from_when_the_repository_became_free() -> None:
    # Queued an hour ago behind a long backup that ended 5 minutes ago: it is about to start.
    assert not is_stale(check(created_at=NOW - 60 * MIN, repository_last_end=NOW - 5 * MIN), NOW)
    assert is_stale(check(created_at=NOW - 60 * MIN, repository_last_end=NOW - 16 * MIN), NOW)


def test_a_retry_waiting_out_its_backoff_is_not_stale() -> None:
    assert not is_stale(check(created_at=NOW - 60 * MIN, not_before=NOW - 5 * MIN), NOW)
    assert is_stale(check(created_at=NOW - 60 * MIN, not_before=NOW - 15 * MIN), NOW)


def test_a_check_waiting_for_room_other_jobs_take_is_never_stale() -> None:
    # Its agent busy with another repository's backup of hours, or every slot taken:
    # it starts when those end, however long that is.
    for reason in ("agent_busy", "global_limit", "class_limit"):
        busy = check(created_at=NOW - 300 * MIN, waiting=Waiting(reason=reason, detail="…"))
        assert not is_stale(busy, NOW), reason


def test_a_check_waiting_for_its_own_repository_or_agent_may_be_given_up() -> None:
    for reason in ("agent_offline", "repository_busy", "behind_plan", "retry_backoff"):
        assert is_stale(check(waiting=Waiting(reason=reason, detail="…")), NOW), reason


def test_a_queued_check_no_dispatcher_spoke_of_is_not_judged() -> None:
    # No dispatcher answered (or it may start now): nobody can tell it is stuck.
    assert not is_stale(check(created_at=NOW - 300 * MIN, waiting=None), NOW)


def test_a_sent_check_its_agent_did_not_start_is_stale_15_minutes_after_it_was_sent() -> None:
    def sent(at: datetime) -> WaitingCheck:
        return check(created_at=NOW - 300 * MIN, waiting=None, status=JobStatus.SENT, sent_at=at)

    assert not is_stale(sent(NOW - 5 * MIN), NOW)
    assert is_stale(sent(NOW - 16 * MIN), NOW)


def test_the_stale_error_says_what_happened_and_what_to_do() -> None:
    e = stale_error(check())
    assert e.kind == "stalled"
    assert "scheduled check waited 15 min without starting" in e.message and "r1" in e.message
    assert e.message.endswith("(agent a1 is offline)")
    assert "a1" in e.hint


def plan(**kw: object) -> PlanHealth:
    base: dict[str, object] = {
        "plan_id": "p1",
        "name": "web",
        "project": "default",
        "created_at": NOW - timedelta(days=10),
        "alert_after_s": 86_400,
    }
    base.update(kw)
    return PlanHealth(**base)  # type: ignore[arg-type]


def test_a_plan_is_overdue_after_alert_after_s_since_its_last_success_or_creation() -> None:
    assert is_overdue(plan(), NOW)  # created 10 days ago, never succeeded
    assert not is_overdue(plan(last_success_at=NOW - timedelta(hours=23)), NOW)
    assert is_overdue(plan(last_success_at=NOW - timedelta(hours=24)), NOW)
    assert not is_overdue(plan(created_at=NOW - timedelta(hours=1)), NOW)


def test_overdue_is_raised_once_per_last_success() -> None:
    p = plan(last_success_at=NOW - timedelta(days=2), last_success_job="j9")
    assert not overdue_raised(p, None, raised=False)
    assert overdue_raised(p, p.last_success_at, raised=True)
    # The last overdue was about an older success: this is a new one.
    assert not overdue_raised(p, NOW - timedelta(days=5), raised=True)
    assert overdue_msg_id(p) == "overdue:p1:j9" and overdue_msg_id(plan()) == "overdue:p1:never"


def test_durations_read_well() -> None:
    assert [duration(s) for s in (45, 3600, 12_000, 7 * 86_400, 90)] == [
        "45 s",
        "1 h",
        "3 h 20 min",
        "7 d",
        "1 min 30 s",
    ]

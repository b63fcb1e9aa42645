"""Which targets want an event, what the message says, what counts as a recovery (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.notifier.domain import Notice, job_notice, recovery, storage_notice, targets_for, worth_reading
from shared import events as ev
from shared.event_filters import DEFAULT_EVENTS, filters_of, valid, wants
from shared.jobs import JobView

AT = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("filters", "key", "wanted"),
    [
        (["backup.failed"], "backup.failed", True),
        (["backup.failed"], "check.failed", False),
        (["*.failed"], "check.failed", True),
        (["*.failed"], "backup.warning", False),
        (["backup.*"], "backup.started", True),
        (["backup.*"], "backup.recovered", True),
        (["backup.*"], "restore.failed", False),
        (["restore.*"], "restore.completed", True),
        (["*"], "agent.offline", True),
        ([" schedule.missed "], "schedule.missed", True),
        ([], "backup.failed", False),
    ],
)
def test_patterns(filters: list[str], key: str, wanted: bool) -> None:
    assert wants(filters, key) is wanted


def test_a_target_naming_no_events_hears_failures_and_warnings() -> None:
    defaults = filters_of([])
    assert defaults == list(DEFAULT_EVENTS) and filters_of(None) == defaults
    heard = ("backup.failed", "check.warning", "schedule.missed", "plan.overdue", "agent.offline")
    assert all(wants(defaults, k) for k in heard)
    assert not any(wants(defaults, k) for k in ("backup.completed", "backup.started", "backup.recovered"))
    assert filters_of(["backup.*"]) == ["backup.*"]


@pytest.mark.parametrize(
    ("pattern", "ok"),
    [
        ("*", True),
        ("*.failed", True),
        ("backup.*", True),
        ("plan.overdue", True),
        ("backup", False),
        ("", False),
        ("Backup.Failed", False),
        ("backup.failed.now", False),
        ("**", False),
    ],
)
def test_filters_the_api_accepts(pattern: str, ok: bool) -> None:
    assert valid(pattern) is ok


def test_targets_hear_their_own_project_and_agents_reach_everyone() -> None:
    targets: list[dict[str, Any]] = [
        {"id": "a", "project": "default", "events": ["*"]},
        {"id": "b", "project": "shop", "events": ["*"]},
        {"id": "c", "project": "shop", "events": ["backup.completed"]},
    ]
    job = Notice(key="backup.failed", title="", body="", project="shop")
    assert [t["id"] for t in targets_for(targets, job)] == ["b"]
    agent = Notice(key="agent.offline", title="", body="")
    assert [t["id"] for t in targets_for(targets, agent)] == ["a", "b"]


def test_a_backup_message_has_what_a_person_needs() -> None:
    stats = {"nfiles": 10, "original_size": 2_500_000_000, "compressed_size": 1_000_000, "deduplicated_size": 5000}
    view = JobView(
        id="j1",
        type="backup",
        status=ev.JobStatus.WARNING,
        agent="web-1",
        repository_name="offsite",
        plan_name="web",
        trigger="schedule",
        created_at=AT,
        duration_s=83.25,
        result=ev.JobResult(
            exit_code=1, archive="web-2026-11-23", stats=stats, warnings=["/etc/shadow: Permission denied"]
        ),
    )
    n = job_notice(view, "warning", "https://borg.example")
    assert n.key == "backup.warning" and n.project == "default" and n.job_id == "j1"
    assert n.title == "borgflow: backup warning — web"
    for words in (
        "Status: warning",
        "Agent: web-1",
        "Repository: offsite",
        "Plan: web",
        "Trigger: schedule",
        "Duration: 83.2 s",
        "Archive: web-2026-11-23",
        "Files: 10, original 2.5 GB, compressed 1.0 MB, deduplicated 5.0 kB",
        "Warning: /etc/shadow: Permission denied",
        "Details: https://borg.example/queue/j1",
    ):
        assert words in n.body


@pytest.mark.parametrize(
    ("previous", "overdue", "said"),
    [
        (["failed"], False, "The backup succeeded after 1 failed backup."),
        (["failed", "failed", "completed"], False, "The backup succeeded after 2 failed backups."),
        (["failed"], True, "The backup succeeded after 1 failed backup and after the plan was overdue."),
        (["completed", "failed"], True, "The backup succeeded after the plan was overdue."),
        (["completed", "failed"], False, None),
        (["warning"], False, None),
        ([], False, None),  # the first backup of a plan
    ],
)
def test_what_counts_as_a_recovery(previous: list[str], overdue: bool, said: str | None) -> None:
    assert recovery(previous, overdue) == said


def test_a_job_event_nobody_listens_to_is_not_worth_reading_its_history() -> None:
    targets = [
        {"project": "default", "events": ["backup.failed"]},
        {"project": "ops", "events": ["*.failed", "check.started"]},
    ]
    backup = ev.JobLabels(type="backup", agent="a1")
    prune_ops = ev.JobLabels(type="prune", agent="a1", project="ops")
    assert worth_reading(targets, "failed", backup)
    assert not worth_reading(targets, "cancelled", backup)
    assert not worth_reading(targets, "failed", ev.JobLabels(type="prune", agent="a1"))
    assert worth_reading(targets, "failed", prune_ops)
    # job.started names no job type: worth it when some target wants a start of any type
    assert worth_reading(targets, "started", None)
    assert not worth_reading(targets[:1], "started", None)
    assert not worth_reading([], "failed", backup)


def test_storage_alerts_are_notices_targets_hear_by_default() -> None:
    data = ev.StorageData(
        repository_id="r1", name="main", job_id="j1", free_percent=4.2, threshold_percent=10,
        disk_free=42_000_000_000, disk_total=1_000_000_000_000,
    )  # fmt: skip
    low = storage_notice(data, True, "http://bf")
    assert low.key == "repository.storage_low" and wants(DEFAULT_EVENTS, low.key)
    assert "main" in low.title and "4.2% free (42.0 GB of 1.0 TB), threshold 10%" in low.body
    recovered = storage_notice(data, False, "http://bf")
    assert recovered.key == "repository.storage_recovered" and valid(recovered.key)
    assert not wants(DEFAULT_EVENTS, recovered.key)

"""Which finished jobs keep their log under each log_save_policy, and what a job whose log
is gone is told (shared/logpolicy.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.events import LogLine
from shared.logpolicy import discard_reason, marker, note

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("policy", "kept"),
    [
        ("all", {"completed", "warning", "failed", "cancelled"}),
        ("failed_and_warnings", {"warning", "failed"}),
        ("failed_only", {"failed"}),
    ],
)
def test_each_policy_keeps_the_logs_of_its_statuses(policy: str, kept: set[str]) -> None:
    for status in ("completed", "warning", "failed", "cancelled"):
        reason = discard_reason(policy, status)
        assert (reason is None) == (status in kept), (policy, status)
        if reason is not None:
            assert policy in reason and status in reason


def test_a_missing_log_says_why() -> None:
    dropped = marker("the log_save_policy setting is failed_only (...) and this job completed", NOW)
    assert note(dropped, ended=True, finished_at=NOW, now=NOW, retention_days=30) == dropped.message.removeprefix(
        "log not kept: "
    )
    kept = LogLine(at=NOW, message="borg exited with 0", source="executor")
    assert note(kept, ended=True, finished_at=NOW, now=NOW, retention_days=30) is None
    old = NOW - timedelta(days=31)
    assert "log_retention_days" in (note(None, ended=True, finished_at=old, now=NOW, retention_days=30) or "")
    assert "log_max_bytes" in (note(None, ended=True, finished_at=NOW, now=NOW, retention_days=30) or "")
    assert note(None, ended=False, finished_at=None, now=NOW, retention_days=30) is None
    assert note(None, ended=True, started=False, finished_at=NOW, now=NOW, retention_days=30) is None

"""The notifier tells s3_sync and package_install failures as it tells borg's: the kind, the
tool's words, what to do; a target may subscribe to them by type (s3_sync holds a digit)."""

from __future__ import annotations

from datetime import UTC, datetime

from services.executor.outcomes import HintContext, hint_for
from services.notifier.domain import job_notice
from shared import events as ev
from shared.event_filters import DEFAULT_EVENTS, valid, wants
from shared.jobs import JobView

AT = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)


def failed(type_: str, kind: str, message: str) -> JobView:
    hint = hint_for(kind, HintContext(agent="web-1"))
    assert hint, f"no hint for {kind}"
    return JobView(
        id="j1",
        type=type_,
        status=ev.JobStatus.FAILED,
        agent="web-1",
        created_at=AT,
        error=ev.JobError(kind=kind, message=message, hint=hint),
    )


def test_a_failed_sync_or_install_is_told_with_its_kind_and_hint() -> None:
    cases = [
        ("s3_sync", "bad_remote", "rclone exited with 1 (syntax or usage error): didn't find section in config file"),
        ("s3_sync", "sync_failed", "rclone exited with 7 (fatal error): account suspended"),
        ("s3_sync", "rclone_missing", "cannot run rclone: No such file or directory"),
        ("package_install", "package_not_found", "apt-get install nosuch failed: Unable to locate package nosuch"),
        ("package_install", "install_failed", "apt-get install sl failed: dpkg returned an error code (1)"),
        ("package_install", "apt_unavailable", "agent web-1 has no apt-get"),
    ]
    for type_, kind, message in cases:
        view = failed(type_, kind, message)
        notice = job_notice(view, "failed", "https://borg.example")
        assert notice.key == f"{type_}.failed" and wants(DEFAULT_EVENTS, notice.key)
        assert f"Error ({kind}): {message}" in notice.body


def test_a_target_may_subscribe_to_sync_failures_alone() -> None:
    assert valid("s3_sync.failed") and valid("package_install.*")
    assert wants(["s3_sync.failed"], "s3_sync.failed") and not wants(["s3_sync.failed"], "backup.failed")

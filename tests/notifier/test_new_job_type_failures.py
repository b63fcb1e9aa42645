"""The notifier tells the failures of the job types beyond borg's (database dumps and
restores, plugin tests, s3_sync, package_install) as it tells borg's: the kind, the
tool's or server's words, what to do; a target may subscribe to them by type."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.executor.outcomes import HintContext, hint_for
from services.notifier.domain import job_notice
from shared import events as ev
from shared.event_filters import DEFAULT_EVENTS, valid, wants
from shared.jobs import JobView

AT = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)

CASES = [
    ("backup", "dump_failed", 'the dump of postgresql database shop failed: database "shop" does not exist'),
    ("restore_pg", "database_connection", "the target side failed: connection refused"),
    ("restore_mysql", "dump_not_found", "the archive side failed: no borgflow-dumps/mysql/shop.dump"),
    ("plugin_test", "script_missing", "1 of 3 checks failed: script '/opt/pre.sh' /opt/pre.sh does not exist"),
    ("s3_sync", "bad_remote", "rclone exited with 1 (syntax or usage error): didn't find section in config file"),
    ("s3_sync", "sync_failed", "rclone exited with 7 (fatal error): account suspended"),
    ("s3_sync", "rclone_missing", "cannot run rclone: No such file or directory"),
    ("package_install", "package_not_found", "apt-get install nosuch failed: Unable to locate package nosuch"),
    ("package_install", "install_failed", "apt-get install sl failed: dpkg returned an error code (1)"),
    ("package_install", "apt_unavailable", "agent web-1 has no apt-get"),
]


@pytest.mark.parametrize(("type_", "kind", "message"), CASES)
def test_a_failure_is_told_with_its_kind_and_hint(type_: str, kind: str, message: str) -> None:
    hint = hint_for(kind, HintContext(agent="web-1"))
    assert hint, f"no hint for {kind}"
    view = JobView(
        id="j1",
        type=type_,
        status=ev.JobStatus.FAILED,
        agent="web-1",
        plan_name="shop",
        created_at=AT,
        error=ev.JobError(kind=kind, message=message, hint=hint),
    )
    notice = job_notice(view, "failed", "https://borg.example")
    assert notice.key == f"{type_}.failed" and wants(DEFAULT_EVENTS, notice.key)
    assert f"Error ({kind}): {message}" in notice.body
    assert f"What to do: {hint}" in notice.body


def test_a_target_may_subscribe_to_one_type_of_failure() -> None:
    assert valid("s3_sync.failed") and valid("package_install.*")  # s3_sync holds a digit
    assert wants(["s3_sync.failed"], "s3_sync.failed") and not wants(["s3_sync.failed"], "backup.failed")
    assert wants(["restore_*.failed"], "restore_mysql.failed") and not wants(["restore_*.failed"], "backup.failed")

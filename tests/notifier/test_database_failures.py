"""The notifier tells database failures as it tells borg's: the kind, the server's words, what to do."""

from __future__ import annotations

from datetime import UTC, datetime

from services.executor.outcomes import HintContext, hint_for
from services.notifier.domain import job_notice
from shared import events as ev
from shared.event_filters import DEFAULT_EVENTS, wants
from shared.jobs import JobView

AT = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)


def failed(type_: str, kind: str, message: str) -> JobView:
    hint = hint_for(kind, HintContext(agent="db-1"))
    assert hint, f"no hint for {kind}"
    return JobView(
        id="j1",
        type=type_,
        status=ev.JobStatus.FAILED,
        agent="db-1",
        plan_name="shop",
        created_at=AT,
        error=ev.JobError(kind=kind, message=message, hint=hint),
    )


def test_a_failed_dump_restore_or_plugin_test_is_told_with_its_kind_and_hint() -> None:
    cases = [
        ("backup", "dump_failed", 'the dump of postgresql database shop failed: database "shop" does not exist'),
        ("restore_pg", "database_connection", "the target side failed: connection refused"),
        ("restore_mysql", "dump_not_found", "the archive side failed: no borgflow-dumps/mysql/shop.dump"),
        ("plugin_test", "script_missing", "1 of 3 checks failed: script '/opt/pre.sh' /opt/pre.sh does not exist"),
    ]
    for type_, kind, message in cases:
        view = failed(type_, kind, message)
        notice = job_notice(view, "failed", "https://borg.example")
        assert notice.key == f"{type_}.failed" and wants(DEFAULT_EVENTS, notice.key)
        assert f"Error ({kind}): {message}" in notice.body
        assert f"What to do: {view.error.hint if view.error else ''}" in notice.body
    assert wants(["restore_*.failed"], "restore_mysql.failed") and not wants(["restore_*.failed"], "backup.failed")

"""Database restores and plugin tests read their repository: beside other readers, never beside a writer."""

from __future__ import annotations

from services.dispatcher.domain import Job, decide
from shared.config import SystemSettings

LIMITS = SystemSettings()


def job(i: int, type_: str, agent: str = "a1") -> Job:
    return Job(id=f"j{i}", type=type_, agent=agent, repository_id="r1", order=i)


def test_restores_and_plugin_tests_overlap_one_another_but_wait_for_a_writer() -> None:
    readers = [job(1, "restore_pg", "a1"), job(2, "restore_mysql", "a2"), job(3, "plugin_test", "a3")]
    assert decide(readers, [], LIMITS).start == ["j1", "j2", "j3"]
    waiting = decide(readers, [job(0, "backup", "a4")], LIMITS)
    assert waiting.start == []
    assert {w.reason for w in waiting.waiting.values()} == {"repository_busy"}
    # And a backup waits for them.
    assert decide([job(4, "backup", "a4")], readers, LIMITS).start == []

"""A verification report read at a given time: OK turns STALE past keep_verified_days,
damage stays damage, archives never checked read UNVERIFIED; and a check's log lines give
a verdict per archive (services/executor/verification.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.executor.parse import LogEntry
from services.executor.verification import CheckFindings, mapped_verdict
from shared.verification import Recorded, needing_check, report

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def recorded(archive: str, result: str, days_ago: float) -> Recorded:
    return Recorded(archive=archive, result=result, verified_at=NOW - timedelta(days=days_ago), job_id="j1")


def test_results_age_into_stale_and_unknown_archives_read_unverified() -> None:
    items = report(
        known=["fresh", "old", "broken-long-ago", "never"],
        recorded=[
            recorded("fresh", "OK", 29.9),
            recorded("old", "OK", 30.1),
            recorded("broken-long-ago", "CORRUPT", 90),
        ],
        now=NOW,
        keep_days=30,
    )
    assert [(i.archive, i.result) for i in items] == [
        ("broken-long-ago", "CORRUPT"),
        ("fresh", "OK"),
        ("never", "UNVERIFIED"),
        ("old", "STALE"),
    ]
    never = next(i for i in items if i.archive == "never")
    assert never.verified_at is None and never.job_id is None
    assert needing_check(items) == ["never", "old"]
    # A shorter keep makes the fresh one stale too.
    assert needing_check(report(["fresh"], [recorded("fresh", "OK", 2)], NOW, keep_days=1)) == ["fresh"]


def entry(message: str, level: str = "info", name: str = "borg.archive") -> LogEntry:
    return LogEntry(level=level, message=message, name=name)


def test_archive_check_lines_give_a_verdict_per_archive() -> None:
    findings = CheckFindings(verify_data=False, requested=[])
    for e in (
        entry("Starting archive consistency check..."),
        entry("Analyzing archive a1 (1/2)"),
        entry("Analyzing archive a2 (2/2)"),
        entry("a2: src/f: Missing file chunk detected (Byte 0-10, Chunk ab).", level="error"),
        entry("Archive consistency check complete, problems found.", level="error"),
    ):
        findings.note(e)
    verdicts = {v.archive: v for v in findings.verdicts()}
    assert verdicts["a1"].result == "OK" and "not read back" in verdicts["a1"].detail
    assert verdicts["a2"].result == "MISSING" and "Missing file chunk" in verdicts["a2"].detail
    assert not findings.needs_mapping


def test_damaged_chunks_are_mapped_onto_the_files_that_use_them() -> None:
    bad = "ab" * 32
    findings = CheckFindings(verify_data=True)
    findings.note(entry(f"chunk {bad}: Data integrity error: Segment entry checksum mismatch", level="error"))
    assert findings.needs_mapping and findings.damaged == {bad}
    good = "cd" * 32
    dump = {
        "_manifest_entry": {"id": "\u007f" + "ee" * 32},
        "_meta": {"items": ["\u007f" + "ff" * 32]},
        "_items": [
            {"path": "src/a", "chunks": [["\u007f" + good, 10, 10]]},
            {"path": "src/b", "chunks": [["\u007f" + bad, 10, 10]]},
        ],
    }
    v = mapped_verdict("a1", dump, findings.damaged, verify_data=True)
    assert (v.result, v.detail) == ("CORRUPT", "data errors in 1 file: src/b")
    assert mapped_verdict("a1", dump, {"ff" * 32}, verify_data=True).result == "MISSING"
    assert mapped_verdict("a1", dump, {"00" * 32}, verify_data=True).result == "OK"

"""Each job type's reading of borg's output: progress, details and the last word on the
outcome, from verbatim lines (shared/reference/borg-and-infra.md for borg 1.4.5 and its
1.2.4 notes; the extract, check-on-damage and include-pattern lines were recorded on
borg 1.4.5 here the same way)."""

# Verbatim borg lines stay on one line each, however long: long lines are allowed here.
# ruff: noqa: E501

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from services.executor.collect import OutputCollector
from services.executor.outcomes import HintContext, Verdict, classify
from services.executor.parse import parse_freed, parse_prune_line, parse_size
from services.executor.readers import (
    BackupReader,
    CheckReader,
    CompactReader,
    DeleteReader,
    ExtractReader,
    PruneReader,
    Reader,
    estimate_for,
    reader_for,
)
from services.executor.verification import CheckFindings
from shared.events import Estimate, JobSpec, PlanRef

CTX = HintContext(location="/srv/repo", repository_id="r1", agent="web-1")

# --------------------------------------------------------------------------- verbatim lines

EXTRACT_START = '{"message": "Calculating total archive size for the progress indicator (might take long for large archives)", "current": 0, "total": 0, "info": null, "operation": 1, "msgid": "extract", "type": "progress_percent", "finished": false, "time": 1795451568.476453}'
EXTRACT_LIST = '{"type": "log_message", "time": 1795451568.4960299, "message": "data/dir00/file000.txt", "levelname": "INFO", "name": "borg.output.list"}'
EXTRACT_FILE = '{"message": "  0.0% Extracting: data/dir00/file000.txt", "current": 15, "total": 63751560, "info": ["data/dir00/file000.txt"], "operation": 1, "msgid": "extract", "type": "progress_percent", "finished": false, "time": 1795451568.4964657}'
EXTRACT_DONE = (
    '{"operation": 1, "msgid": "extract", "type": "progress_percent", "finished": true, "time": 1795451569.5031004}'
)
EXTRACT_LIST_DIR = '{"type": "log_message", "time": 1795459225.547415, "message": "src", "levelname": "INFO", "name": "borg.output.list"}'
EXTRACT_LAST = '{"message": "100.0% Extracting: src/top.txt", "current": 400003, "total": 400003, "info": ["src/top.txt"], "operation": 1, "msgid": "extract", "type": "progress_percent", "finished": false, "time": 1795459230.4804711}'
PATTERN_NEVER_MATCHED = '{"type": "log_message", "time": 1795459226.8597794, "message": "Include pattern \'nonexist\' never matched.", "levelname": "WARNING", "name": "borg.archiver", "msgid": "IncludePatternNeverMatchedWarning"}'

CHECK_START = '{"type": "log_message", "time": 1795451579.2894871, "message": "Starting repository check", "levelname": "INFO", "name": "borg.repository"}'
CHECK_SEGMENTS = '{"message": "Checking segments 10.0%", "current": 2, "total": 10, "info": null, "operation": 1, "msgid": "repository.check", "type": "progress_percent", "finished": false, "time": 1795451579.2927792}'
CHECK_REPO_OK = '{"type": "log_message", "time": 1795451579.5552688, "message": "Finished full repository check, no problems found.", "levelname": "INFO", "name": "borg.repository"}'
CHECK_ARCHIVES = '{"message": "Checking archives 0.0%", "current": 1, "total": 2, "info": null, "operation": 2, "msgid": "check.rebuild_refcounts", "type": "progress_percent", "finished": false, "time": 1795451579.608983}'
CHECK_ARCHIVES_OK = '{"type": "log_message", "time": 1795451579.692187, "message": "Archive consistency check complete, no problems found.", "levelname": "INFO", "name": "borg.archive"}'
CHECK_PARTIAL_OK = '{"type": "log_message", "time": 1795451582.4853318, "message": "Finished partial repository check, no problems found.", "levelname": "INFO", "name": "borg.repository"}'
CHECK_DAMAGE = '{"type": "log_message", "time": 1795459238.8235328, "message": "Data integrity error: Segment entry checksum mismatch [segment 2, offset 200448]", "levelname": "ERROR", "name": "borg.repository"}'
CHECK_INDEX_MISMATCH = '{"type": "log_message", "time": 1795459238.8276334, "message": "Index object count mismatch.", "levelname": "ERROR", "name": "borg.repository"}'
CHECK_ERRORS_FOUND = '{"type": "log_message", "time": 1795459238.8288887, "message": "Finished full repository check, errors found.", "levelname": "ERROR", "name": "borg.repository"}'
CHECK_PARTIAL_ERRORS = '{"type": "log_message", "time": 1795459239.380922, "message": "Finished partial repository check, errors found.", "levelname": "ERROR", "name": "borg.repository"}'
CHECK_NEEDS_REPO_ONLY = '{"type": "log_message", "time": 1795451582.0, "message": "Command Error: --repository-only is required for --max-duration support.", "levelname": "ERROR", "name": "borg.archiver", "msgid": "CommandError"}'
INTEGRITY_ERROR = '{"type": "log_message", "time": 1795451582.0, "message": "Data integrity error: Segment entry checksum mismatch [segment 2, offset 200448]", "levelname": "ERROR", "name": "borg.archiver", "msgid": "IntegrityError"}'
LOCK_TIMEOUT = '{"type": "log_message", "time": 1795451651.3951244, "message": "Failed to create/acquire the lock <REPO>/lock.exclusive (timeout).", "levelname": "ERROR", "name": "borg.archiver", "msgid": "LockTimeout"}'
SIGTERM = '{"type": "log_message", "time": 1795451651.3951244, "message": "Received SIGTERM", "levelname": "ERROR", "name": "borg.archiver", "msgid": "Signal.SIGTERM"}'

PRUNE_KEEP = '{"type": "log_message", "time": 1795451587.253119, "message": "Keeping archive (rule: secondly #1):         a3                                   Mon, 2026-11-23 16:33:06 [0f42f898c80549df2f7547444d0cbedb8cc6e45d592f440287ab0760bf45e932]", "levelname": "INFO", "name": "borg.output.list"}'
PRUNE_PRUNE = '{"type": "log_message", "time": 1795451587.27155, "message": "Pruning archive (1/2):                       a2                                   Mon, 2026-11-23 16:32:47 [c5ced33c3e7771dce22fc1384a741f5dff05d17d31002391c81d44a4ee027565]", "levelname": "INFO", "name": "borg.output.list"}'
PRUNE_PRUNE_2 = '{"type": "log_message", "time": 1795459255.8314471, "message": "Pruning archive (2/2):                       a1                                   Mon, 2026-11-23 18:40:24 [b9da51df87a497a489ad970f8d8aa26d08757fa4e37c311e2da0d6e11699b466]", "levelname": "INFO", "name": "borg.output.list"}'
PRUNE_STATS = '{"type": "log_message", "time": 1795451587.3048284, "message": "Deleted data:             -128.19 MB           -126.36 MB            -19.57 kB", "levelname": "INFO", "name": "borg.output.stats"}'
PRUNE_SUMMARY = '{"type": "log_message", "time": 1795459255.8246827, "message": "Keeping 1 archives and 0 checkpoints, pruning 2 archives and 0 checkpoints.", "levelname": "INFO", "name": "borg.archiver"}'

COMPACT_SEGMENTS = '{"message": "Compacting segments   0%", "current": 1, "total": 19, "info": null, "operation": 1, "msgid": "repository.compact_segments", "type": "progress_percent", "finished": false, "time": 1795451587.8128762}'
COMPACT_DONE = '{"operation": 1, "msgid": "repository.compact_segments", "type": "progress_percent", "finished": true, "time": 1795451587.8154469}'
COMPACT_FREED = '{"type": "log_message", "time": 1795451587.9, "message": "compaction freed about 4.19 kB repository space.", "levelname": "INFO", "name": "borg.repository"}'

DELETE_NOT_FOUND = '{"type": "log_message", "time": 1795451595.3552775, "message": "Archive a1 not found (1/1).", "levelname": "WARNING", "name": "borg.archiver"}'
DELETE_STATS = '{"type": "log_message", "time": 1795459257.4133658, "message": "Deleted data:                    0 B                  0 B                  0 B", "levelname": "INFO", "name": "borg.output.stats"}'
ARCHIVE_DOES_NOT_EXIST = '{"type": "log_message", "time": 1795451595.0, "message": "Archive a1 does not exist", "levelname": "ERROR", "name": "borg.archiver", "msgid": "Archive.DoesNotExist"}'

ARCHIVE_PROGRESS_FIRST = '{"original_size": 0, "compressed_size": 0, "deduplicated_size": 0, "nfiles": 0, "path": "data", "time": 1795451556.9779108, "type": "archive_progress", "finished": false}'
ARCHIVE_PROGRESS_BIG = '{"original_size": 20792450, "compressed_size": 20759108, "deduplicated_size": 20759108, "nfiles": 100, "path": "data/big0.bin", "time": 1795451557.1839964, "type": "archive_progress", "finished": false}'


def feed(reader: Reader, lines: list[str], step_s: float = 0.5) -> OutputCollector:
    collector = OutputCollector(reader)
    for n, line in enumerate(lines, 1):
        collector.feed(line, n * step_s)
    return collector


def outcome(reader: Reader, lines: list[str], exit_code: int) -> tuple[OutputCollector, Verdict]:
    collector = feed(reader, lines)
    collector.finish(exit_code)
    return collector, reader.verdict(classify(exit_code, collector.messages, CTX), exit_code, CTX)


# --------------------------------------------------------------------------- restore, restore_check


def test_a_restore_counts_listed_items_and_says_what_it_writes_where() -> None:
    reader = ExtractReader("a1", "/var/tmp/restore")
    c = feed(reader, [EXTRACT_START, EXTRACT_LIST, EXTRACT_FILE, EXTRACT_DONE])
    p = c.progress
    assert p.action == "restoring data/dir00/file000.txt to /var/tmp/restore"
    assert (p.nfiles, p.current, p.total, p.percent, p.current_file) == (1, 15, 63751560, 0.0, "data/dir00/file000.txt")
    assert reader.result(b"").details == {"destination": "/var/tmp/restore", "files": 1, "bytes": 15}
    # the list lines are in the log, but not among the messages an outcome is decided from
    assert c.messages == []


def test_a_restore_check_names_what_it_verified_and_writes_nothing() -> None:
    reader = ExtractReader("a1", None)
    c = feed(reader, [EXTRACT_START, EXTRACT_LIST_DIR, EXTRACT_LIST, EXTRACT_FILE, EXTRACT_LAST, EXTRACT_DONE])
    assert c.progress.action == "verifying src/top.txt" and c.progress.percent == 100.0
    assert reader.result(b"").details == {"files": 2, "paths": ["src", "data/dir00/file000.txt"], "bytes": 400003}


def test_a_restore_check_names_at_most_100_paths() -> None:
    reader = ExtractReader("a1", None)
    feed(reader, [EXTRACT_LIST] * 150)
    details = reader.result(b"").details
    assert details["files"] == 150 and len(details["paths"]) == 100 and "bytes" not in details


def test_a_restore_path_that_never_matched_is_a_warning() -> None:
    _, verdict = outcome(ExtractReader("a1", "/r"), [EXTRACT_START, PATTERN_NEVER_MATCHED, EXTRACT_DONE], 101)
    assert verdict.status == "warning" and verdict.warnings == ["Include pattern 'nonexist' never matched."]


# --------------------------------------------------------------------------- check


@pytest.mark.parametrize(
    ("lines", "exit_code", "partial", "status", "kind", "problems"),
    [
        (
            [CHECK_START, CHECK_SEGMENTS, CHECK_REPO_OK, CHECK_ARCHIVES, CHECK_ARCHIVES_OK],
            0,
            False,
            "completed",
            None,
            [],
        ),
        ([CHECK_START, CHECK_SEGMENTS, CHECK_PARTIAL_OK], 0, True, "completed", None, []),
        # damage: borg exits 1 (its "warning") after error lines without a msgid
        (
            [CHECK_START, CHECK_DAMAGE, CHECK_INDEX_MISMATCH, CHECK_ERRORS_FOUND],
            1,
            False,
            "failed",
            "integrity",
            [
                "Data integrity error: Segment entry checksum mismatch [segment 2, offset 200448]",
                "Index object count mismatch.",
                "Finished full repository check, errors found.",
            ],
        ),
        (
            [CHECK_START, CHECK_DAMAGE, CHECK_PARTIAL_ERRORS],
            1,
            True,
            "failed",
            "integrity",
            [
                "Data integrity error: Segment entry checksum mismatch [segment 2, offset 200448]",
                "Finished partial repository check, errors found.",
            ],
        ),
        # an IntegrityError ends borg: modern code 90, legacy 2 (borg 1.2.4 has only 0/1/2)
        (
            [CHECK_START, INTEGRITY_ERROR],
            90,
            False,
            "failed",
            "integrity",
            [INTEGRITY_ERROR.split('"message": "')[1].split('"')[0]],
        ),
        (
            [CHECK_START, INTEGRITY_ERROR],
            2,
            False,
            "failed",
            "integrity",
            [INTEGRITY_ERROR.split('"message": "')[1].split('"')[0]],
        ),
        # failures that are not damage stay what they are
        ([LOCK_TIMEOUT], 73, False, "failed", "lock_timeout", []),
        (
            [CHECK_NEEDS_REPO_ONLY],
            4,
            True,
            "failed",
            "bad_options",
            [],
        ),
        ([CHECK_START, SIGTERM], 143, False, "failed", "borg_error", []),
    ],
    ids=[
        "full_ok",
        "partial_ok",
        "damage",
        "partial_damage",
        "integrity_modern",
        "integrity_legacy",
        "lock",
        "bad_options",
        "sigterm",
    ],
)
def test_check_outcomes(
    lines: list[str], exit_code: int, partial: bool, status: str, kind: str | None, problems: list[str]
) -> None:
    reader = CheckReader(partial=partial)
    _, verdict = outcome(reader, lines, exit_code)
    assert verdict.status == status
    assert (verdict.error.kind if verdict.error else None) == kind
    assert reader.details() == {"problems": problems, "partial": partial}
    if kind == "integrity":
        assert verdict.error is not None and verdict.error.exit_code == exit_code
        assert "borg check --repair /srv/repo" in verdict.error.hint and "cp -a /srv/repo" in verdict.error.hint
        assert verdict.error.message.startswith("borg check found damage")


ANALYZING_A1 = '{"type": "log_message", "time": 1795451579.6, "message": "Analyzing archive a1 (1/2)", "levelname": "INFO", "name": "borg.archive"}'


@pytest.mark.parametrize(
    ("lines", "exit_code", "verdicts"),
    [
        ([CHECK_START, CHECK_REPO_OK, ANALYZING_A1, CHECK_ARCHIVES_OK], 0, [("a1", "OK")]),
        # stopped while analyzing a1: a1 was not verified, so it gets no verdict at all
        ([CHECK_START, CHECK_REPO_OK, ANALYZING_A1, SIGTERM], 143, None),
        ([CHECK_START, CHECK_REPO_OK, ANALYZING_A1, LOCK_TIMEOUT], 73, None),
    ],
    ids=["verified", "stopped", "lock"],
)
def test_a_check_gives_verdicts_only_for_archives_it_verified(
    lines: list[str], exit_code: int, verdicts: list[tuple[str, str]] | None
) -> None:
    reader = CheckReader(partial=False, findings=CheckFindings(verify_data=False))
    _, verdict = outcome(reader, lines, exit_code)
    details = reader.details() if verdict.status != "failed" else reader.failure_details()
    got = details.get("verification")
    assert (None if got is None else [(v["archive"], v["result"]) for v in got]) == verdicts


def test_check_progress_follows_each_phase() -> None:
    c = feed(CheckReader(partial=False), [CHECK_START, CHECK_SEGMENTS])
    assert (c.progress.action, c.progress.percent) == ("Checking segments", 20.0)
    c.feed(CHECK_ARCHIVES, 3.0)
    assert (c.progress.action, c.progress.percent) == ("Checking archives", 50.0)


# --------------------------------------------------------------------------- prune


@pytest.mark.parametrize(
    ("message", "archive", "kept"),
    [
        (
            "Keeping archive (rule: secondly #1):         a3                                   Mon, 2026-11-23 16:33:06 [0f42f898c80549df2f7547444d0cbedb8cc6e45d592f440287ab0760bf45e932]",
            "a3",
            True,
        ),
        (
            "Pruning archive (1/2):                       a2                                   Mon, 2026-11-23 16:32:47 [c5ced33c3e7771dce22fc1384a741f5dff05d17d31002391c81d44a4ee027565]",
            "a2",
            False,
        ),
        (
            "Keeping archive (rule: daily #7):            web db-2026-11-23T01:00:00           Mon, 2026-11-23 01:00:02 [c5ced33c3e7771dce22fc1384a741f5dff05d17d31002391c81d44a4ee027565]",
            "web db-2026-11-23T01:00:00",
            True,
        ),
        (
            "Keeping checkpoint archive:                  daily-2026-11-23T01:00:00.checkpoint Mon, 2026-11-23 01:00:02 [c5ced33c3e7771dce22fc1384a741f5dff05d17d31002391c81d44a4ee027565]",
            "daily-2026-11-23T01:00:00.checkpoint",
            True,
        ),
        (
            "Would prune:                                 a1                                   Mon, 2026-11-23 16:32:40 [b9da51df87a497a489ad970f8d8aa26d08757fa4e37c311e2da0d6e11699b466]",
            "a1",
            False,
        ),
    ],
    ids=["keeping", "pruning", "name_with_space", "checkpoint", "dry_run"],
)
def test_prune_list_lines(message: str, archive: str, kept: bool) -> None:
    decision = parse_prune_line(message)
    assert decision is not None and (decision.archive, decision.kept) == (archive, kept)


@pytest.mark.parametrize(
    "message",
    [
        "Keeping 1 archives and 0 checkpoints, pruning 2 archives and 0 checkpoints.",
        "Deleted data:             -128.19 MB           -126.36 MB            -19.57 kB",
        "data/dir00/file000.txt",
    ],
)
def test_other_lines_are_not_prune_decisions(message: str) -> None:
    assert parse_prune_line(message) is None


def test_prune_details_name_kept_and_pruned_archives() -> None:
    reader = PruneReader()
    _, verdict = outcome(reader, [PRUNE_SUMMARY, PRUNE_KEEP, PRUNE_PRUNE, PRUNE_PRUNE_2, PRUNE_STATS], 0)
    assert verdict.status == "completed"
    # --stats: what the pruned archives held alone (19.57 kB), for the next compact to free
    assert reader.result(b"").details == {"kept": ["a3"], "pruned": ["a2", "a1"], "deleted_bytes": 19570}


# --------------------------------------------------------------------------- compact


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("0 B", 0),
        ("512 B", 512),
        ("4.19 kB", 4190),
        ("1.50 MB", 1_500_000),
        ("2.00 GB", 2_000_000_000),
        ("1.25 TB", 1_250_000_000_000),
        ("-19.57 kB", -19570),
        ("3.00 KiB", 3072),
        ("1.50 MiB", 1_572_864),
        ("lots", None),
    ],
)
def test_sizes_as_borg_prints_them(text: str, size: int | None) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("message", "freed"),
    [
        ("compaction freed about 4.19 kB repository space.", (4190, "4.19 kB")),
        ("compaction freed about 0 B repository space.", (0, "0 B")),
        ("compaction freed about 1.02 GB repository space.", (1_020_000_000, "1.02 GB")),
        ("Compacting segments   0%", None),
    ],
)
def test_compaction_freed_lines(message: str, freed: tuple[int, str] | None) -> None:
    assert parse_freed(message) == freed


def test_compact_reports_progress_and_freed_space() -> None:
    reader = CompactReader()
    c, verdict = outcome(reader, [COMPACT_SEGMENTS, COMPACT_DONE, COMPACT_FREED], 0)
    assert verdict.status == "completed" and c.progress.percent == 5.3
    assert c.progress.action == "Compacting segments"
    assert reader.result(b"").details == {"freed_bytes": 4190, "freed": "4.19 kB"}


# --------------------------------------------------------------------------- delete_archive


@pytest.mark.parametrize(
    ("lines", "exit_code", "status", "kind"),
    [
        ([DELETE_STATS], 0, "completed", None),
        # borg 1.4.5 and 1.2.4 alike: rc 1, a WARNING without msgid
        ([DELETE_NOT_FOUND, DELETE_STATS], 1, "failed", "archive_not_found"),
        ([ARCHIVE_DOES_NOT_EXIST], 31, "failed", "archive_not_found"),
        ([LOCK_TIMEOUT], 73, "failed", "lock_timeout"),
    ],
    ids=["deleted", "not_found_warning", "not_found_modern_error", "lock"],
)
def test_delete_outcomes(lines: list[str], exit_code: int, status: str, kind: str | None) -> None:
    reader = DeleteReader("a1")
    _, verdict = outcome(reader, lines, exit_code)
    assert verdict.status == status
    assert (verdict.error.kind if verdict.error else None) == kind
    if kind == "archive_not_found":
        assert verdict.error is not None and "pick one from its archive list" in verdict.error.hint
    if exit_code == 1:
        assert verdict.error is not None and verdict.error.message == "Archive a1 not found (1/1)."
    if status == "completed":
        assert reader.result(b"").details == {"deleted": "a1"}


# --------------------------------------------------------------------------- backup percent and ETA


@pytest.mark.parametrize(
    ("estimate", "percent", "eta_s"),
    [
        (None, None, None),
        (Estimate(), None, None),
        # 20792450 bytes of 41584900 after 1.0 s: half-way, one more second to go
        (Estimate(original_size=41584900, nfiles=10_000), 50.0, 1.0),
        (Estimate(nfiles=400), 25.0, 3.0),
        # bigger than last time: how much is left cannot be told, so no percent and no ETA
        # (never one pinned just under 100)
        (Estimate(original_size=1000), None, None),
    ],
    ids=["no_estimate", "empty_estimate", "by_size", "by_files", "past_estimate"],
)
def test_backup_percent_and_eta_from_the_previous_backup(
    estimate: Estimate | None, percent: float | None, eta_s: float | None
) -> None:
    c = feed(BackupReader("a1", estimate), [ARCHIVE_PROGRESS_FIRST, ARCHIVE_PROGRESS_BIG])
    assert (c.progress.percent, c.progress.eta_s) == (percent, eta_s)
    assert c.progress.estimated is (True if percent is not None else None)
    assert c.progress.original_size == 20792450 and c.progress.archive == "a1"


def test_an_estimate_of_other_paths_is_not_used() -> None:
    plan = PlanRef(id="p1", name="p", repository_id="r1", paths=["/big"], exclude=["*.tmp"])
    base = JobSpec(id="j1", type="backup", agent="a1", created_at=datetime(2026, 12, 3, tzinfo=UTC), plan=plan)
    same = Estimate(original_size=10, paths=["/big"], exclude=["*.tmp"])
    assert estimate_for(msgspec.structs.replace(base, estimate=same)) == same
    for other in (Estimate(original_size=10, paths=["/nearly-empty"]), Estimate(original_size=10, paths=["/big"])):
        assert estimate_for(msgspec.structs.replace(base, estimate=other)) is None
    reader = reader_for(msgspec.structs.replace(base, estimate=same), "a1")
    assert isinstance(reader, BackupReader)
    assert reader.result(b'{"archive": {"name": "a1", "stats": {}}}').details == {
        "sources": {"paths": ["/big"], "exclude": ["*.tmp"]}
    }


def test_backup_at_its_start_shows_zero_percent_and_no_eta_yet() -> None:
    c = feed(BackupReader("a1", Estimate(original_size=1000)), [ARCHIVE_PROGRESS_FIRST])
    assert (c.progress.percent, c.progress.eta_s) == (0.0, None)


def _details(reader: Reader) -> dict[str, Any]:
    return reader.result(b"").details


def test_readers_without_details_say_nothing() -> None:
    assert _details(Reader("a1")) == {} and _details(CompactReader()) == {}

"""borg's stderr lines and `create --json` stdout, parsed: verbatim samples from
shared/reference/borg-and-infra.md (borg 1.4.5, cross-checked with 1.2.4)."""

# Verbatim borg lines stay on one line each, however long: long lines are allowed here.
# ruff: noqa: E501

from __future__ import annotations

import pytest

from services.executor.collect import OutputCollector
from services.executor.parse import (
    LogEntry,
    ProgressUpdate,
    advance,
    parse_create_json,
    parse_line,
)
from services.executor.readers import Reader
from shared.events import Progress

ARCHIVE_PROGRESS_FIRST = (
    '{"original_size": 0, "compressed_size": 0, "deduplicated_size": 0, "nfiles": 0, "path": "data", '
    '"time": 1795451556.9779108, "type": "archive_progress", "finished": false}'
)
ARCHIVE_PROGRESS_BIG = (
    '{"original_size": 20792450, "compressed_size": 20759108, "deduplicated_size": 20759108, "nfiles": 100, '
    '"path": "data/big0.bin", "time": 1795451557.1839964, "type": "archive_progress", "finished": false}'
)
ARCHIVE_PROGRESS_DONE = '{"time": 1795451558.3106043, "type": "archive_progress", "finished": true}'
PROGRESS_MESSAGE = (
    '{"message": "Initializing cache transaction: Reading config", "operation": 1, '
    '"msgid": "cache.begin_transaction", "type": "progress_message", "finished": false, "time": 1795451556.9814415}'
)
PROGRESS_MESSAGE_DONE = (
    '{"operation": 1, "msgid": "cache.begin_transaction", "type": "progress_message", "finished": true, '
    '"time": 1795451556.98461}'
)
FILE_STATUS = '{"type": "file_status", "status": "A", "path": "data/dir00/file000.txt"}'
EXTRACT_START = (
    '{"message": "Calculating total archive size for the progress indicator (might take long for large archives)", '
    '"current": 0, "total": 0, "info": null, "operation": 1, "msgid": "extract", "type": "progress_percent", '
    '"finished": false, "time": 1795451568.476453}'
)
EXTRACT_FILE = (
    '{"message": "  0.0% Extracting: data/dir00/file000.txt", "current": 15, "total": 63751560, '
    '"info": ["data/dir00/file000.txt"], "operation": 1, "msgid": "extract", "type": "progress_percent", '
    '"finished": false, "time": 1795451568.4964657}'
)
CHECK_SEGMENTS = (
    '{"message": "Checking segments 10.0%", "current": 2, "total": 10, "info": null, "operation": 1, '
    '"msgid": "repository.check", "type": "progress_percent", "finished": false, "time": 1795451579.2927792}'
)
CHECK_ARCHIVES = (
    '{"message": "Checking archives 0.0%", "current": 1, "total": 2, "info": null, "operation": 2, '
    '"msgid": "check.rebuild_refcounts", "type": "progress_percent", "finished": false, "time": 1795451579.608983}'
)
COMPACT_SEGMENTS = (
    '{"message": "Compacting segments   0%", "current": 1, "total": 19, "info": null, "operation": 1, '
    '"msgid": "repository.compact_segments", "type": "progress_percent", "finished": false, "time": 1795451587.8128762}'
)
COMPACT_DONE = (
    '{"operation": 1, "msgid": "repository.compact_segments", "type": "progress_percent", "finished": true, '
    '"time": 1795451587.8154469}'
)
LIST_LINE = (
    '{"type": "log_message", "time": 1795451568.4960299, "message": "data/dir00/file000.txt", '
    '"levelname": "INFO", "name": "borg.output.list"}'
)
LOCK_TIMEOUT = (
    '{"type": "log_message", "time": 1795451651.3951244, "message": "Failed to create/acquire the lock '
    '<REPO>/lock.exclusive (timeout).", "levelname": "ERROR", "name": "borg.archiver", "msgid": "LockTimeout"}'
)
STALE_LOCK = (
    '{"type": "log_message", "time": 1795451707.4356782, "message": "Killed stale lock vm@3281355014145.12587-0.", '
    '"levelname": "WARNING", "name": "borg.locking"}'
)
SIGTERM = (
    '{"type": "log_message", "time": 1795451651.3951244, "message": "Received SIGTERM", "levelname": "ERROR", '
    '"name": "borg.archiver", "msgid": "Signal.SIGTERM"}'
)
ARCHIVE_NOT_FOUND_NO_MSGID = (
    '{"type": "log_message", "time": 1795451595.3552775, "message": "Archive a1 not found (1/1).", '
    '"levelname": "WARNING", "name": "borg.archiver"}'
)
# Recorded here: without a tty borg prompts on stderr with no newline, then logs its JSON error.
PROMPT_THEN_JSON = (
    'Enter passphrase for key /tmp/bx/repo: {"type": "log_message", "time": 1795457026.9759703, '
    '"message": "Cannot acquire a passphrase: BORG_PASSPHRASE is not set. BORG_PASSCOMMAND is not set. '
    'Interactive password query failed.", "levelname": "ERROR", "name": "borg.archiver", '
    '"msgid": "NoPassphraseFailure"}'
)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            ARCHIVE_PROGRESS_FIRST,
            ProgressUpdate(
                action="backing up data",
                nfiles=0,
                original_size=0,
                compressed_size=0,
                deduplicated_size=0,
                current_file="data",
            ),
        ),
        (
            ARCHIVE_PROGRESS_BIG,
            ProgressUpdate(
                action="backing up data/big0.bin",
                nfiles=100,
                original_size=20792450,
                compressed_size=20759108,
                deduplicated_size=20759108,
                current_file="data/big0.bin",
            ),
        ),
        (
            PROGRESS_MESSAGE,
            ProgressUpdate(action="Initializing cache transaction: Reading config", msgid="cache.begin_transaction"),
        ),
        (
            EXTRACT_START,
            ProgressUpdate(
                action="Calculating total archive size for the progress indicator (might take long for large archives)",
                current=0,
                total=0,
                msgid="extract",
            ),
        ),
        (
            # the percentage in borg's message is dropped from the action: percent says it
            EXTRACT_FILE,
            ProgressUpdate(
                action="Extracting: data/dir00/file000.txt",
                percent=0.0,
                current=15,
                total=63751560,
                current_file="data/dir00/file000.txt",
                msgid="extract",
            ),
        ),
        (
            CHECK_SEGMENTS,
            ProgressUpdate(action="Checking segments", percent=20.0, current=2, total=10, msgid="repository.check"),
        ),
        (
            CHECK_ARCHIVES,
            ProgressUpdate(
                action="Checking archives", percent=50.0, current=1, total=2, msgid="check.rebuild_refcounts"
            ),
        ),
        (
            COMPACT_SEGMENTS,
            ProgressUpdate(
                action="Compacting segments", percent=5.3, current=1, total=19, msgid="repository.compact_segments"
            ),
        ),
    ],
)
def test_progress_lines(line: str, expected: ProgressUpdate) -> None:
    assert parse_line(line) == [expected]


@pytest.mark.parametrize(
    "line",
    [ARCHIVE_PROGRESS_DONE, PROGRESS_MESSAGE_DONE, COMPACT_DONE, FILE_STATUS, "", "   \n"],
    ids=["archive_finished", "message_finished", "percent_finished", "file_status", "empty", "blank"],
)
def test_lines_that_say_nothing_new(line: str) -> None:
    assert parse_line(line) == []


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (LIST_LINE, LogEntry(level="info", message="data/dir00/file000.txt", name="borg.output.list")),
        (
            LOCK_TIMEOUT,
            LogEntry(
                level="error",
                message="Failed to create/acquire the lock <REPO>/lock.exclusive (timeout).",
                msgid="LockTimeout",
                name="borg.archiver",
            ),
        ),
        (
            STALE_LOCK,
            LogEntry(level="warning", message="Killed stale lock vm@3281355014145.12587-0.", name="borg.locking"),
        ),
        (
            SIGTERM,
            LogEntry(level="error", message="Received SIGTERM", msgid="Signal.SIGTERM", name="borg.archiver"),
        ),
        (
            ARCHIVE_NOT_FOUND_NO_MSGID,
            LogEntry(level="warning", message="Archive a1 not found (1/1).", name="borg.archiver"),
        ),
        (
            "Failed to create/acquire the lock <REPO>/lock.exclusive (timeout).\n",
            LogEntry(
                level="info",
                message="Failed to create/acquire the lock <REPO>/lock.exclusive (timeout).",
                plain=True,
            ),
        ),
        ('{"not": "borg"}', LogEntry(level="info", message='{"not": "borg"}', plain=True)),
        ("{broken json", LogEntry(level="info", message="{broken json", plain=True)),
    ],
)
def test_log_lines(line: str, expected: LogEntry) -> None:
    assert parse_line(line) == [expected]


def test_a_prompt_without_newline_and_the_json_behind_it_are_both_kept() -> None:
    prompt, error = parse_line(PROMPT_THEN_JSON)
    assert prompt == LogEntry(level="info", message="Enter passphrase for key /tmp/bx/repo:", plain=True)
    assert isinstance(error, LogEntry) and error.msgid == "NoPassphraseFailure" and error.level == "error"


def test_progress_accumulates_with_a_rate_and_an_eta() -> None:
    p = Progress(archive="a1")
    p = advance(p, ProgressUpdate(action="backing up data", nfiles=0, original_size=0), 0.2)
    p = advance(p, parse_line(ARCHIVE_PROGRESS_BIG)[0], 2.0)  # type: ignore[arg-type]
    assert p.archive == "a1" and p.nfiles == 100 and p.current_file == "data/big0.bin"
    assert p.bytes_per_s == pytest.approx(20792450 / 2.0, rel=1e-3)
    assert p.action == "backing up data/big0.bin"
    p = advance(Progress(), ProgressUpdate(current=25, total=100, percent=25.0), 10.0)
    assert p.percent == 25.0 and p.eta_s == 30.0


CREATE_JSON = b"""{
    "archive": {
        "command_line": ["borg", "create", "--progress", "--log-json", "--json", "--list", "--filter=AME", "<REPO>::a1", "data"],
        "duration": 1.33727,
        "end": "2026-11-23T16:32:38.000000",
        "id": "3e2bdd05d1061808cc6f82ee6cf5d10fe3f3e2ef44e20c29fc6811116e4f0d01",
        "limits": {"max_archive_size": 2.8657969235264713e-05},
        "name": "a1",
        "start": "2026-11-23T16:32:36.000000",
        "stats": {"compressed_size": 63057674, "deduplicated_size": 63057674, "nfiles": 2003, "original_size": 63751560}
    },
    "cache": {
        "path": "<BORG_BASE_DIR>/.cache/borg/3fbbf599bea942b3237b942cbecda18bc67d5bb262daebf239f514133f5c8420",
        "stats": {"total_chunks": 2021, "total_csize": 63057674, "total_size": 63751560,
                  "total_unique_chunks": 2021, "unique_csize": 63179331, "unique_size": 64095391}
    },
    "encryption": {"mode": "repokey"},
    "repository": {"id": "3fbbf599bea942b3237b942cbecda18bc67d5bb262daebf239f514133f5c8420",
                   "last_modified": "2026-11-23T16:32:38.000000", "location": "<REPO>"}
}"""


def test_create_json_gives_the_archive_and_its_stats() -> None:
    result = parse_create_json(CREATE_JSON)
    assert result.archive == "a1"
    stats = dict(result.stats)
    rates = {
        k: stats.pop(k) for k in ("read_bytes_per_s", "transfer_bytes_per_s", "compression_ratio", "dedup_hit_rate")
    }
    assert stats == {
        "nfiles": 2003,
        "original_size": 63751560,
        "compressed_size": 63057674,
        "deduplicated_size": 63057674,
        "duration": 1.33727,
    }
    # A first backup: nothing was in the repository before, everything is transferred.
    assert rates == {
        "read_bytes_per_s": 47672915.7,
        "transfer_bytes_per_s": 47154033.2,
        "compression_ratio": 1.011,
        "dedup_hit_rate": 0.0,
    }
    # The repository's totals, from borg's cache stats.
    assert result.details["repository"] == {
        "original_size": 63751560,
        "compressed_size": 63057674,
        "deduplicated_size": 63179331,
    }


@pytest.mark.parametrize("stdout", [b"", b"   ", b"not json", b"[]", b'{"archive": 3}'])
def test_an_interrupted_create_prints_no_result(stdout: bytes) -> None:
    assert parse_create_json(stdout).archive is None


def test_plain_lines_are_info_while_borg_goes_on_and_errors_when_it_fails() -> None:
    c = OutputCollector()
    assert c.feed("Warning: Password input may be echoed.\n", 0.1).log == []  # held for now
    fed = c.feed(LIST_LINE, 0.2)
    assert [(x.level, x.message) for x in fed.log] == [
        ("info", "Warning: Password input may be echoed."),
        ("info", "data/dir00/file000.txt"),
    ]
    c.feed("usage: borg create: error: unrecognized arguments\n", 0.3)
    assert [(x.level, x.message) for x in c.finish(4)] == [
        ("error", "usage: borg create: error: unrecognized arguments")
    ]
    assert c.messages[-1].level == "error"


def test_progress_lines_update_the_collector_but_not_the_log() -> None:
    c = OutputCollector(Reader("a1"))
    fed = c.feed(ARCHIVE_PROGRESS_BIG, 1.0)
    assert fed.log == [] and fed.progress is not None and fed.progress.nfiles == 100
    assert c.feed(FILE_STATUS, 1.1).log == [] and c.progressed

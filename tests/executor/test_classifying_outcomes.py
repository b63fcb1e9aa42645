"""Exit code + borg's messages → status, error kind and hint (reference section 4.6),
for borg 1.4.5 in modern and legacy exit-code modes and for 1.2.4, which has fewer msgids."""

# Verbatim borg lines stay on one line each, however long: long lines are allowed here.

from __future__ import annotations

import pytest

from services.executor.outcomes import (
    BorgMessage,
    HintContext,
    classify,
    exit_code_of,
    hint_for,
    status_of,
)

CTX = HintContext(location="/srv/repo", repository_id="r1", agent="web-1")

PASSPHRASE_WRONG = BorgMessage(
    level="error",
    message="Passphrase supplied in BORG_PASSPHRASE, by BORG_PASSCOMMAND, or via BORG_PASSPHRASE_FD is incorrect.",
    msgid="PassphraseWrong",
)
PASSPHRASE_WRONG_124 = BorgMessage(
    level="error",
    message="passphrase supplied in BORG_PASSPHRASE, by BORG_PASSCOMMAND or via BORG_PASSPHRASE_FD is incorrect.",
    msgid="PassphraseWrong",
)
NO_PASSPHRASE = BorgMessage(
    level="error",
    message="Cannot acquire a passphrase: BORG_PASSPHRASE is not set. BORG_PASSCOMMAND is not set. "
    "Interactive password query failed.",
    msgid="NoPassphraseFailure",
)
LOCK_TIMEOUT = BorgMessage(
    level="error",
    message="Failed to create/acquire the lock <REPO>/lock.exclusive (timeout).",
    msgid="LockTimeout",
)
NO_REPO = BorgMessage(level="error", message="Repository /srv/repo does not exist.", msgid="Repository.DoesNotExist")
ARCHIVE_EXISTS = BorgMessage(level="error", message="Archive a1 already exists", msgid="Archive.AlreadyExists")
SOURCE_MISSING = BorgMessage(
    level="warning",
    message="<SRC>/nonexistent: stat: [Errno 2] No such file or directory: '<SRC>/nonexistent'",
    msgid="BackupFileNotFoundError",
)
SOURCE_MISSING_124 = BorgMessage(
    level="warning", message="nonexistent: [Errno 2] No such file or directory: 'nonexistent'"
)
ARCHIVE_NOT_FOUND = BorgMessage(level="warning", message="Archive a1 not found (1/1).")
COMMAND_ERROR = BorgMessage(
    level="error",
    message="Command Error: --repository-only is required for --max-duration support.",
    msgid="CommandError",
)
SIGINT_ONCE = BorgMessage(level="error", message="Error: Got Ctrl-C / SIGINT.", msgid="Error")
SIGINT_ONCE_124 = BorgMessage(level="error", message="Got Ctrl-C / SIGINT.")
SIGINT_TWICE = BorgMessage(level="error", message="Keyboard interrupt")
SIGTERM = BorgMessage(level="error", message="Received SIGTERM", msgid="Signal.SIGTERM")
STALE_LOCK = BorgMessage(level="warning", message="Killed stale lock vm@3281355014145.12587-0.")


@pytest.mark.parametrize(
    ("exit_code", "messages", "kind"),
    [
        # modern codes (BORG_EXIT_CODES=modern, borg 1.4)
        (52, [PASSPHRASE_WRONG], "passphrase"),
        (50, [NO_PASSPHRASE], "passphrase"),
        (73, [LOCK_TIMEOUT], "lock_timeout"),
        (13, [NO_REPO], "repository_not_found"),
        (30, [ARCHIVE_EXISTS], "archive_exists"),
        (4, [COMMAND_ERROR], "bad_options"),
        (2, [SIGINT_ONCE], "borg_error"),
        (130, [SIGINT_TWICE], "borg_error"),
        (143, [SIGTERM], "borg_error"),
        # legacy codes: everything is 2, the msgid decides
        (2, [PASSPHRASE_WRONG], "passphrase"),
        (2, [LOCK_TIMEOUT], "lock_timeout"),
        (2, [NO_REPO], "repository_not_found"),
        (2, [ARCHIVE_EXISTS], "archive_exists"),
        (2, [COMMAND_ERROR], "bad_options"),
        # borg 1.2.4: lower-case text, still a msgid; SIGINT without one
        (2, [PASSPHRASE_WRONG_124], "passphrase"),
        (2, [SIGINT_ONCE_124], "borg_error"),
        # a modern code with no (or an unknown) msgid: the code decides
        (52, [BorgMessage(level="error", message="something")], "passphrase"),
        (14, [], "no_space"),
        (21, [], "permission_denied"),
        (31, [], "archive_not_found"),
        (80, [], "connection"),
        (90, [BorgMessage(level="error", message="Data integrity error: x", msgid="Exception")], "integrity"),
        (10, [], "repository_exists"),
        (3, [], "borg_error"),
        (99, [], "borg_error"),
        # the last error with a known msgid wins over earlier noise and over a generic one
        (
            73,
            [SIGINT_ONCE, LOCK_TIMEOUT, BorgMessage(level="error", message="Traceback ...")],
            "lock_timeout",
        ),
    ],
)
def test_failures_are_classified(exit_code: int, messages: list[BorgMessage], kind: str) -> None:
    verdict = classify(exit_code, messages, CTX)
    assert verdict.status == "failed"
    assert verdict.error is not None
    assert verdict.error.kind == kind
    assert verdict.error.exit_code == exit_code


def test_the_message_text_alone_never_decides_the_kind() -> None:
    fake = BorgMessage(level="error", message="Failed to create/acquire the lock x (timeout).")
    verdict = classify(2, [fake], CTX)
    assert verdict.error is not None and verdict.error.kind == "borg_error"
    assert verdict.error.message == "Failed to create/acquire the lock x (timeout)."


@pytest.mark.parametrize(
    ("exit_code", "messages", "warnings"),
    [
        (107, [SOURCE_MISSING], [SOURCE_MISSING.message]),  # modern
        (1, [SOURCE_MISSING], [SOURCE_MISSING.message]),  # legacy
        (1, [SOURCE_MISSING_124], [SOURCE_MISSING_124.message]),  # 1.2.4, no msgid
        (1, [ARCHIVE_NOT_FOUND], ["Archive a1 not found (1/1)."]),  # same code in both modes
        (100, [], []),
        (127, [], []),
    ],
)
def test_warnings(exit_code: int, messages: list[BorgMessage], warnings: list[str]) -> None:
    verdict = classify(exit_code, messages, CTX)
    assert verdict.status == "warning" and verdict.error is None and verdict.warnings == warnings


def test_success_keeps_borgs_warnings_but_is_completed() -> None:
    verdict = classify(0, [STALE_LOCK], CTX)
    assert verdict.status == "completed" and verdict.error is None
    assert verdict.warnings == ["Killed stale lock vm@3281355014145.12587-0."]


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (0, "completed"),
        (1, "warning"),
        (2, "failed"),
        (3, "failed"),
        (99, "failed"),
        (100, "warning"),
        (107, "warning"),
        (127, "warning"),
        (128, "failed"),
        (130, "failed"),
        (137, "failed"),
        (143, "failed"),
    ],
)
def test_status_by_exit_code(code: int, status: str) -> None:
    assert status_of(code) == status


@pytest.mark.parametrize(("returncode", "code"), [(0, 0), (2, 2), (-2, 130), (-15, 143), (-9, 137)])
def test_a_signal_death_reads_as_128_plus_n(returncode: int, code: int) -> None:
    assert exit_code_of(returncode) == code


def test_message_falls_back_to_plain_lines_then_to_the_code() -> None:
    plain = BorgMessage(level="error", message="usage: borg create: error: the following arguments are required")
    verdict = classify(4, [plain], CTX)
    assert verdict.error is not None and verdict.error.kind == "bad_options" and "usage" in verdict.error.message
    empty = classify(137, [], CTX)
    assert empty.error is not None and empty.error.message == "borg was stopped by SIGKILL (exit code 137)"
    assert classify(2, [], CTX).error == classify(2, [], CTX).error
    none = classify(2, [], CTX).error
    assert none is not None and none.message == "borg exited with code 2"


@pytest.mark.parametrize(
    ("kind", "msgid", "needle"),
    [
        (
            "passphrase",
            "PassphraseWrong",
            "The repository passphrase is wrong: update it with PUT /api/repositories/r1",
        ),
        ("passphrase", "NoPassphraseFailure", "set one with PUT /api/repositories/r1"),
        (
            "lock_timeout",
            "LockTimeout",
            "Another borg process holds the repository lock; wait for it or raise --lock-wait",
        ),
        (
            "repository_not_found",
            None,
            "No borg repository at /srv/repo: run an init job first or fix the location",
        ),
        ("source_not_found", None, "agent web-1"),
        ("borg_missing", None, "BORGFLOW_BORG"),
        ("no_space", None, "prune and compact"),
    ],
)
def test_hints_name_what_to_fix(kind: str, msgid: str | None, needle: str) -> None:
    assert needle in hint_for(kind, CTX, msgid)


@pytest.mark.parametrize(
    ("exit_code", "message", "location", "needles"),
    [
        # which path, and whom to run the agent as
        (
            21,
            BorgMessage(
                level="error", message="Permission denied to /srv/repo/data.", msgid="Repository.PathPermissionDenied"
            ),
            "/srv/repo",
            ["/srv/repo/data", "run the agent as a user who may read it"],
        ),
        (
            2,
            BorgMessage(
                level="error",
                message="[Errno 13] Permission denied: '/srv/repo/lock.roster'",
                msgid="BackupPermissionError",
            ),
            "/srv/repo",
            ["/srv/repo/lock.roster", "run the agent as a user"],
        ),
        # free space on the disk that holds the repository
        (
            14,
            BorgMessage(level="error", message="Insufficient free space"),
            "/srv/repo",
            ["free space on it", "/srv/repo"],
        ),
        # SSH and network to the repository's host
        (
            80,
            BorgMessage(level="error", message="Connection closed by remote host", msgid="ConnectionClosed"),
            "ssh://borg@backup.example:22/./repo",
            ["the repository host backup.example", "check SSH access and the network"],
        ),
        (80, BorgMessage(level="error", message="Connection closed"), "borg@nas:repo", ["the repository host nas"]),
        # another borg holds the lock: wait, or raise lock-wait
        (73, LOCK_TIMEOUT, "/srv/repo", ["Another borg process holds the repository lock", "raise --lock-wait"]),
    ],
    ids=["permission_repo", "permission_path", "no_space", "connection_ssh", "connection_scp", "lock"],
)
def test_hints_say_what_to_do_about_the_failure(
    exit_code: int, message: BorgMessage, location: str, needles: list[str]
) -> None:
    verdict = classify(exit_code, [message], HintContext(location=location, repository_id="r1", agent="web-1"))
    assert verdict.error is not None
    for needle in needles:
        assert needle in verdict.error.hint


def test_every_classified_failure_has_a_hint() -> None:
    for code in range(2, 100):
        verdict = classify(code, [], CTX)
        assert verdict.error is not None and verdict.error.hint, code

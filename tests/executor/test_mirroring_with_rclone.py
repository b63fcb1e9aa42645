"""What s3_sync makes of rclone: its command line, its JSON stats as progress, and its exit
codes as error kinds with hints. Pure functions; tests/e2e/test_mirroring_repositories.py
runs rclone for real."""

from __future__ import annotations

import pytest

from services.executor.exceptions import BadJob
from services.executor.jobs.s3_sync import failure, progress_of, sync_command


def test_the_command_mirrors_the_repository_directory_with_json_stats_and_the_limit() -> None:
    assert sync_command("rclone", "file:///srv/borg/r", "s3:bucket/r", "10M") == [
        "rclone",
        "sync",
        "--use-json-log",
        "--stats=1s",
        "--stats-log-level=NOTICE",
        "--bwlimit=10M",
        "--",
        "/srv/borg/r",
        "s3:bucket/r",
    ]
    assert "--bwlimit" not in " ".join(sync_command("rclone", "/srv/r", "s3:b", None))


@pytest.mark.parametrize("location", ["ssh://backup@host/./r", "backup@host:r"])
def test_a_remote_repository_cannot_be_mirrored_from_the_agent(location: str) -> None:
    with pytest.raises(BadJob) as e:
        sync_command("rclone", location, "s3:b", None)
    assert e.value.kind == "bad_options" and "agent that holds" in e.value.hint


def test_stats_become_progress_with_percent_speed_and_the_limit() -> None:
    stats = {"bytes": 25, "totalBytes": 100, "speed": 10.5, "eta": 7, "transfers": 1}
    p = progress_of(stats, "1M")
    assert (p.bytes_done, p.bytes_total, p.percent, p.bytes_per_s, p.eta_s, p.bwlimit) == (
        25,
        100,
        25.0,
        10.5,
        7.0,
        "1M",
    )
    # Before rclone has listed the source it knows no total (and no eta).
    early = progress_of({"bytes": 0, "totalBytes": 0, "speed": 0, "eta": None}, None)
    assert early.percent is None and early.eta_s is None and early.bwlimit is None


@pytest.mark.parametrize(
    ("code", "errors", "kind", "in_hint"),
    [
        (
            1,
            ['Failed to create file system for "x:y": didn\'t find section in config file'],
            "bad_remote",
            "rclone config",
        ),
        (1, ["unknown flag"], "bad_options", "options.remote"),
        (3, ["directory not found"], "sync_failed", "does not exist"),
        (5, ["connection reset"], "connection", "retry"),
        (7, ["account suspended"], "sync_failed", "credentials"),
    ],
)
def test_exit_codes_become_kinds_with_hints(code: int, errors: list[str], kind: str, in_hint: str) -> None:
    got_kind, message, hint = failure(code, errors, "x:y", "a1")
    assert got_kind == kind and in_hint in hint
    assert message.startswith(f"rclone exited with {code} (") and errors[-1] in message

"""What the client shows and decides without an api: progress lines, folding events, exit codes."""

from __future__ import annotations

from typing import Any

from services.client import render
from services.client.commands import OUTCOME_EXIT
from services.client.follow import apply, fresher

RUNNING: dict[str, Any] = {
    "id": "j1",
    "type": "backup",
    "status": "running",
    "agent": "local",
    "plan_name": "home",
    "started_at": "2026-11-23T16:20:00Z",
    "progress": {"percent": 42.0, "nfiles": 1234, "original_size": 512_000_000, "eta_s": 12.0},
}


def test_progress_line_says_percent_files_bytes_and_eta() -> None:
    line = render.progress_line(RUNNING, 120)
    assert line.startswith("[##########..............]  42.0%")
    assert "1,234 files, 512.0 MB" in line and "ETA 12.0s" in line
    assert len(render.progress_line(RUNNING, 40)) <= 39
    unknown = render.progress_line(RUNNING | {"progress": None}, 120)
    assert "?" in unknown and "starting" in unknown
    progress = {"current": 3, "percent": 5}
    restore = RUNNING | {"type": "restore", "options": {"destination": "/srv/x"}, "progress": progress}
    assert "3 files, -> /srv/x" in render.progress_line(restore, 120)
    check = RUNNING | {"type": "check", "progress": {"percent": 70.0, "action": "Checking segments"}}
    assert "70.0%  Checking segments" in render.progress_line(check, 120)
    estimated = RUNNING | {"progress": RUNNING["progress"] | {"estimated": True}}
    assert "≈ 42.0%" in render.progress_line(estimated, 120) and "ETA ≈12.0s" in render.progress_line(estimated, 120)


def test_events_move_a_job_forward_only() -> None:
    queued = RUNNING | {"status": "queued", "progress": None}
    started = apply(queued, {"type": "job.started", "at": "2026-11-23T16:21:00Z", "data": {"agent": "local"}})
    assert started["status"] == "running" and started["started_at"] == "2026-11-23T16:21:00Z"
    moved = apply(started, {"type": "job.progress", "data": {"percent": 50.0}})
    assert moved["progress"] == {"percent": 50.0}
    error = {"kind": "passphrase", "message": "wrong", "hint": "fix it"}
    failed = apply(moved, {"type": "job.failed", "at": "2026-11-23T16:22:00Z", "data": {"error": error}})
    assert failed["status"] == "failed" and failed["error"] == error
    assert apply(failed, {"type": "job.sent", "data": {}})["status"] == "failed"  # never backwards
    assert fresher(failed, RUNNING)["status"] == "failed"  # a lagging answer does not undo it


def test_outcome_exit_codes() -> None:
    assert OUTCOME_EXIT == {"completed": 0, "warning": 1, "failed": 2, "cancelled": 2}


def test_durations_and_sizes() -> None:
    assert [render.duration(s) for s in (None, 3.25, 75, 3700)] == ["-", "3.2s", "1m15s", "1h01m"]
    assert [render.size(n) for n in (None, 12, 1500, 2_500_000_000)] == ["-", "12 B", "1.5 kB", "2.5 GB"]
    assert render.table(("A", "BB"), [["x", "y"], ["long", "z"]]).splitlines() == ["A     BB", "x     y", "long  z"]

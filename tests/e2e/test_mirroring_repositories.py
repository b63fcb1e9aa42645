"""`s3_sync` through the public API of a running `borgflow up`: a repository made by a
real backup is mirrored with rclone to a local directory remote, byte for byte, its
progress showing the bandwidth limit; a remote rclone does not know fails with a kind
and a hint; a plan's `sync_after` mirrors after each backup.
"""

from __future__ import annotations

import filecmp
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.upsystem import UpSystem, data_dir, make_source, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which(os.environ.get("BORGFLOW_RCLONE") or "rclone") is None,
        reason="rclone is not installed (`make install` installs Debian's rclone as root)",
    ),
]


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpSystem]:
    # Its own temp dir: the embedded Postgres runs as another user that must reach it.
    up = UpSystem(data_dir(), tmp_path_factory.mktemp("sync")).start()
    try:
        yield up
    finally:
        assert up.stop() == 0, up.log.read_text()[-2000:]


@pytest.fixture(scope="module")
def repository(system: UpSystem) -> tuple[str, Path]:
    """A repository holding one real backup of about 4 MB that does not compress."""
    path = system.work / "repo"
    repo = system.ok("POST", "/api/repositories", {"name": "mirrored", "location": str(path), "agent": "local"})
    init = system.ok(
        "POST", "/api/jobs", {"type": "init", "repository_id": repo["id"], "options": {"encryption": "none"}}
    )
    assert system.wait_job(init["id"])["status"] == "completed"
    src = make_source(system.work / "src", files=20, size=2048)
    (src / "noise.bin").write_bytes(os.urandom(4 << 20))
    plan = system.ok("POST", "/api/plans", {"name": "m", "repository_id": repo["id"], "paths": [str(src)]})
    backup = system.ok("POST", "/api/jobs", {"type": "backup", "plan_id": plan["id"]})
    assert system.wait_job(backup["id"])["status"] == "completed"
    return repo["id"], path


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_a_repository_is_mirrored_byte_for_byte_under_a_bandwidth_limit(
    system: UpSystem, repository: tuple[str, Path]
) -> None:
    repo_id, path = repository
    mirror = system.work / "mirror"
    job = system.ok(
        "POST",
        "/api/jobs",
        {"type": "s3_sync", "repository_id": repo_id, "options": {"remote": str(mirror), "bwlimit": "2M"}},
    )
    done = system.wait_job(job["id"])
    assert done["status"] == "completed", done.get("error")

    names = files_under(path)
    assert names and names == files_under(mirror)
    _, mismatch, errors = filecmp.cmpfiles(path, mirror, sorted(names), shallow=False)
    assert (mismatch, errors) == ([], [])

    progress = done["progress"]
    assert progress["bwlimit"] == "2M"
    assert progress["bytes_done"] == progress["bytes_total"] > 4 << 20
    assert progress["percent"] == 100.0
    details = done["result"]["details"]
    assert details["remote"] == str(mirror) and details["bwlimit"] == "2M" and details["transfers"] == len(names)
    log = system.http.get(f"/api/jobs/{job['id']}/log").text
    assert "--bwlimit=2M" in log


def test_a_remote_rclone_does_not_know_fails_with_a_hint(system: UpSystem, repository: tuple[str, Path]) -> None:
    repo_id, _ = repository
    job = system.ok(
        "POST", "/api/jobs", {"type": "s3_sync", "repository_id": repo_id, "options": {"remote": "nowhere:bucket"}}
    )
    done = system.wait_job(job["id"])
    assert done["status"] == "failed"
    error = done["error"]
    assert error["kind"] == "bad_remote" and error["exit_code"] == 1
    assert "rclone config" in error["hint"] and "nowhere:bucket" in error["hint"]


def test_a_bad_bandwidth_limit_is_refused_at_submission(system: UpSystem, repository: tuple[str, Path]) -> None:
    repo_id, _ = repository
    r = system.http.post(
        "/api/jobs",
        json={"type": "s3_sync", "repository_id": repo_id, "options": {"remote": "/tmp/x", "bwlimit": "fast"}},
    )
    assert r.status_code in (400, 422) and "bwlimit" in r.text


def test_a_plan_mirrors_its_repository_after_each_backup(system: UpSystem, repository: tuple[str, Path]) -> None:
    repo_id, path = repository
    mirror = system.work / "chained-mirror"
    bad = system.http.post(
        "/api/plans",
        json={
            "name": "bad",
            "repository_id": repo_id,
            "paths": ["/srv"],
            "sync_after": {"remote": "", "bwlimit": "1M"},
        },
    )
    assert bad.status_code == 400 and "sync_after" in bad.text
    plan = system.ok(
        "POST",
        "/api/plans",
        {
            "name": "mirrored",
            "repository_id": repo_id,
            "paths": [str(system.work / "src")],
            "sync_after": {"remote": str(mirror)},
        },
    )
    assert plan["sync_after"] == {"remote": str(mirror)}
    backup = system.ok("POST", "/api/jobs", {"type": "backup", "plan_id": plan["id"]})
    assert system.wait_job(backup["id"])["status"] == "completed"

    def chained() -> dict[str, Any] | None:
        jobs = system.ok("GET", "/api/jobs?type=s3_sync&limit=100")["items"]
        return next((j for j in jobs if j.get("parent_id") == backup["id"]), None)

    sync = system.wait_job(wait_for(chained, 60, "the chained s3_sync")["id"])
    assert sync["status"] == "completed", sync.get("error")
    assert sync["trigger"] == "chain"
    names = files_under(path)
    assert names == files_under(mirror)
    assert filecmp.cmpfiles(path, mirror, sorted(names), shallow=False)[1:] == ([], [])


def test_a_cancelled_sync_stops_rclone_and_ends_cancelled(system: UpSystem, repository: tuple[str, Path]) -> None:
    repo_id, _ = repository
    job = system.ok(
        "POST",
        "/api/jobs",
        # 4 MB at 100 KiB/s: a minute of work, so the cancel finds rclone running.
        {
            "type": "s3_sync",
            "repository_id": repo_id,
            "options": {"remote": str(system.work / "slow"), "bwlimit": "100k"},
        },
    )

    def transferring() -> bool:
        progress = system.ok("GET", f"/api/jobs/{job['id']}").get("progress") or {}
        return bool(progress.get("bytes_done"))

    wait_for(transferring, 60, "rclone's first stats")
    system.ok("POST", f"/api/jobs/{job['id']}/cancel", expect=202)
    done = system.wait_job(job["id"], timeout=60)
    assert done["status"] == "cancelled"
    assert done["error"]["kind"] == "cancelled_by_user"
    assert "rclone stopped with exit code" in done["error"]["message"]
    log = system.http.get(f"/api/jobs/{job['id']}/log").text
    assert "sending SIGINT to rclone" in log

"""Verification reports and honest progress through a running `borgflow up`, with real borg:
archives read UNVERIFIED until a check, OK after it (`borgflow repo verify --run`), a
"verify what is stale" check finds nothing to do right after, and a segment damaged on
purpose fails the next check as `integrity` and reads CORRUPT or MISSING for an archive
that used it. A backup whose plan's paths changed has no estimate to go on: no percent.
The log_save_policy drops the logs of the jobs it does not keep, and the job says why.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.upsystem import UpSystem, borgflow_exe, data_dir, make_source, wait_for

pytestmark = pytest.mark.slow


class World:
    def __init__(self, system: UpSystem, repo: dict[str, Any], plan: dict[str, Any], path: Path) -> None:
        self.system, self.repo, self.plan, self.path = system, repo, plan, path

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BORGFLOW_")}
        env |= {"BORGFLOW_API_URL": self.system.base, "BORGFLOW_TOKEN": self.system.token}
        return subprocess.run(
            [borgflow_exe(), *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )

    def report(self) -> dict[str, str]:
        items = self.system.ok("GET", f"/api/repositories/{self.repo['id']}/verification")["items"]
        return {i["archive"]: i["result"] for i in items}

    def backup(self) -> dict[str, Any]:
        job = self.system.ok("POST", "/api/jobs", {"type": "backup", "plan_id": self.plan["id"]})
        done = self.system.wait_job(job["id"])
        assert done["status"] == "completed", done
        return done


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    work = tmp_path_factory.mktemp("verify")
    system = UpSystem(data_dir(), work).start()
    try:
        path = work / "repo"
        repo = system.ok(
            "POST",
            "/api/repositories",
            {"name": "main", "location": str(path), "agent": "local", "keep_verified_days": 7},
        )
        init = system.ok(
            "POST", "/api/jobs", {"type": "init", "repository_id": repo["id"], "options": {"encryption": "none"}}
        )
        assert system.wait_job(init["id"])["status"] == "completed"
        nearly_empty = make_source(work / "nearly-empty", files=1, size=10)
        plan = system.ok("POST", "/api/plans", {"name": "p", "repository_id": repo["id"], "paths": [str(nearly_empty)]})
        yield World(system, repo, plan, path)
    finally:
        system.stop()


def test_keep_verified_days_is_a_repository_field(world: World) -> None:
    assert world.repo["keep_verified_days"] == 7
    for bad in ("x", 0):
        r = world.system.http.put(f"/api/repositories/{world.repo['id']}", json={"keep_verified_days": bad})
        assert r.status_code == 400 and "keep_verified_days" in r.text, r.text


def test_a_backup_of_changed_paths_has_no_percent_to_make_up(world: World) -> None:
    first = world.backup()
    assert first["result"]["details"]["sources"]["paths"] == world.plan["paths"]
    bigger = make_source(world.path.parent / "bigger", files=4, size=2048)
    (bigger / "noise.bin").write_bytes(os.urandom(16 << 20))
    world.system.ok("PUT", f"/api/plans/{world.plan['id']}", {"paths": [str(bigger)]})
    second = world.backup()
    progress = second["progress"] or {}
    # The last archive covered another folder: nothing to go on, so no percent at all
    # (a made-up one would have read 99.9 % from the first megabyte on).
    assert progress.get("percent") is None and not progress.get("estimated"), progress


def test_checks_verify_archives_and_damage_reads_corrupt_or_missing(world: World) -> None:
    archives = sorted(world.report())
    assert len(archives) == 2 and set(world.report().values()) == {"UNVERIFIED"}

    ok = world.cli("repo", "verify", "main", "--run", "--json")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    answer = json.loads(ok.stdout)
    assert answer["job"]["status"] == "completed"
    assert {i["archive"]: i["result"] for i in answer["items"]} == dict.fromkeys(archives, "OK")

    stale = world.cli("repo", "verify", "main", "--run", "--stale", "--json")
    assert stale.returncode == 0, stale.stdout + stale.stderr
    assert json.loads(stale.stdout)["job"]["result"]["details"]["nothing_stale"] is True
    newest = world.backup()["result"]["archive"]
    assert world.report()[newest] == "UNVERIFIED"
    stale = world.cli("repo", "verify", "main", "--run", "--stale", "--json")
    assert stale.returncode == 0, stale.stdout + stale.stderr
    assert json.loads(stale.stdout)["job"]["options"]["archives"] == [newest]  # only what was not verified
    assert world.report()[newest] == "OK"

    segments = sorted((world.path / "data" / "0").iterdir(), key=lambda p: p.stat().st_size)
    biggest = segments[-1]  # the 16 MiB of noise the second backup wrote
    with biggest.open("r+b") as f:
        f.seek(biggest.stat().st_size // 2)
        f.write(b"\xff" * 64)
    damaged = world.cli("repo", "verify", "main", "--run")
    assert damaged.returncode == 2, damaged.stdout + damaged.stderr
    assert "failed: integrity" in damaged.stdout and "restore what you need" in damaged.stdout
    results = world.report()
    assert results[archives[-1]] in ("CORRUPT", "MISSING"), (results, damaged.stdout)


def test_the_log_save_policy_drops_logs_of_jobs_it_does_not_keep_and_says_why(world: World) -> None:
    system = world.system
    r = system.http.put("/api/settings", json={"log_save_policy": "some"})
    assert r.status_code == 400 and "log_save_policy" in r.text, r.text
    system.ok("PUT", "/api/settings", {"log_save_policy": "failed_only"})
    try:
        done = world.backup()

        def dropped() -> dict[str, Any] | None:
            job: dict[str, Any] = system.ok("GET", f"/api/jobs/{done['id']}")
            return job if job["log_note"] else None

        job = wait_for(dropped, what="the completed backup's log dropped")
        assert "log_save_policy setting is failed_only" in job["log_note"] and "completed" in job["log_note"]
        log = system.ok("GET", f"/api/jobs/{done['id']}/log")
        assert "log not kept: the log_save_policy" in log and "borg exited" not in log
        assert "not kept: the log_save_policy" in world.cli("jobs", "show", done["id"]).stdout
        gone = system.ok(
            "POST", "/api/plans", {"name": "gone", "repository_id": world.repo["id"], "paths": ["/no/such"]}
        )
        failed = system.wait_job(system.ok("POST", "/api/jobs", {"type": "backup", "plan_id": gone["id"]})["id"])
        assert failed["status"] == "failed"
        assert system.ok("GET", f"/api/jobs/{failed['id']}")["log_note"] is None
        assert "/no/such" in system.ok("GET", f"/api/jobs/{failed['id']}/log")
    finally:
        system.ok("PUT", "/api/settings", {"log_save_policy": "all"})


def test_a_schedule_verifies_what_is_stale(world: World) -> None:
    """Last in the module: the newest archive (the log policy test's backup) was never verified."""
    system = world.system
    newest = next(a for a, result in sorted(world.report().items(), reverse=True) if result == "UNVERIFIED")
    job = {"type": "check", "repository_id": world.repo["id"], "options": {"stale_only": True}}
    schedule = system.ok("POST", "/api/schedules", {"name": "verify-stale", "job": job, "interval_s": 1})
    try:

        def fired() -> dict[str, Any] | None:
            page = system.ok("GET", f"/api/jobs?type=check&trigger=schedule&repository_id={world.repo['id']}")
            return page["items"][-1] if page["items"] else None

        check = wait_for(fired, what="the schedule's check")
    finally:
        system.ok("DELETE", f"/api/schedules/{schedule['id']}", expect=(200, 204))
    # Resolved when it was queued: only what was stale or never verified.
    assert check["options"]["stale_only"] is True and check["options"]["archives"] == [newest]

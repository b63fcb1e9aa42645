"""The walking skeleton, end to end: `borgflow up`, init, backup, real `borg list`, restart."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.support.upsystem import UpSystem, borg_list, data_dir, make_source

pytestmark = pytest.mark.slow

PASSPHRASE = "e2e-very-secret-passphrase"


def test_init_backup_restart(tmp_path: Path) -> None:
    # Its own temp dir: the embedded Postgres runs as another user that must reach it.
    data = data_dir()
    system = UpSystem(data, tmp_path).start()
    try:
        env_file = data / "borgflow.env"
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        env = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
        assert {"BORGFLOW_NATS_URL", "BORGFLOW_DATABASE_URL", "BORGFLOW_API_URL", "BORGFLOW_TOKEN"} <= set(env)
        assert (data / "admin-token").read_text().strip() == system.token
        # The key of secrets at rest: made by `up`, for the api alone, never in borgflow.env.
        key = data / "secret-key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert not set(key.read_text().split()) & set(env_file.read_text().replace("=", " ").split())

        repo_path = tmp_path / "repo"
        repo = system.ok(
            "POST",
            "/api/repositories",
            {"name": "main", "location": str(repo_path), "agent": "local", "passphrase": PASSPHRASE},
        )
        assert "passphrase" not in repo and repo["has_passphrase"] is True
        init = system.ok(
            "POST",
            "/api/jobs",
            {"type": "init", "repository_id": repo["id"], "options": {"encryption": "repokey-blake2"}},
        )
        assert system.wait_job(init["id"])["status"] == "completed"

        src = make_source(tmp_path / "src")
        plan = system.ok("POST", "/api/plans", {"name": "nightly", "repository_id": repo["id"], "paths": [str(src)]})
        job = system.ok("POST", "/api/jobs", {"type": "backup", "plan_id": plan["id"]})
        done = system.wait_job(job["id"])
        assert done["status"] == "completed", done.get("error")
        archive = done["result"]["archive"]
        assert archive.startswith("nightly-")
        assert done["result"]["stats"]["nfiles"] == 50
        assert archive in borg_list(repo_path, PASSPHRASE, tmp_path / "borg-base")

        agents = system.ok("GET", "/api/agents")["items"]
        local = next(a for a in agents if a["name"] == "local")
        assert local["online"] is True and local["borg_version"].startswith("1.4")
        log = system.http.get(f"/api/jobs/{job['id']}/log")
        assert log.status_code == 200 and log.text.strip()
        assert PASSPHRASE not in log.text and PASSPHRASE not in system.log.read_text()
    finally:
        code = system.stop()
    assert code == 0, system.log.read_text()[-2000:]

    again = UpSystem(data, tmp_path).start()
    try:
        ids = [j["id"] for j in again.ok("GET", "/api/jobs?limit=100")["items"]]
        assert job["id"] in ids and init["id"] in ids
        assert again.ok("GET", f"/api/jobs/{job['id']}")["status"] == "completed"
    finally:
        assert again.stop() == 0

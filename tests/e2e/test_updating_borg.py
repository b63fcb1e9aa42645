"""`update_borg` through the public API of a running `borgflow up`: the version asked for is
installed with pip into a venv of the agent's own, verified, and used by the jobs after it
(a ping names the new borg); a version that does not exist fails the job as update_failed
with a hint, and the agent keeps the borg it had; a version that is not PEP 440 is a 400.

The version installed is the one this venv runs (pip finds its wheel in pip's cache or the
configured index in seconds: a build from source would take minutes).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.upsystem import UpSystem, borg_exe, data_dir, wait_for

pytestmark = pytest.mark.slow


def venv_borg_version() -> str:
    out = subprocess.run([borg_exe(), "--version"], capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.split()[-1]


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpSystem]:
    # Its own temp dir: the embedded Postgres runs as another user that must reach it.
    up = UpSystem(data_dir(), tmp_path_factory.mktemp("borgs")).start()
    try:
        yield up
    finally:
        assert up.stop() == 0, up.log.read_text()[-2000:]


def borg_root(system: UpSystem) -> Path:
    # The executor's state directory (services/executor/records.py state_dir).
    return system.data_dir / "executor-local" / "borg"


def current(system: UpSystem) -> str | None:
    link = borg_root(system) / "current"
    return os.readlink(link) if link.is_symlink() else None


def ping(system: UpSystem) -> dict[str, object]:
    job = system.ok("POST", "/api/jobs", {"type": "ping", "agent": "local"})
    done = system.wait_job(job["id"])
    assert done["status"] == "completed", done.get("error")
    details: dict[str, object] = done["result"]["details"]
    return details


def test_a_version_that_is_not_pep_440_is_refused(system: UpSystem) -> None:
    for version in ("latest", "1.4.5; rm -rf /", ">=1.4", ""):
        r = system.http.post(
            "/api/jobs", json={"type": "update_borg", "agent": "local", "options": {"version": version}}
        )
        assert r.status_code == 400, (version, r.text)
        assert r.json()["field"] == "options.version"


def test_a_borg_version_is_installed_verified_and_used_by_later_jobs(system: UpSystem) -> None:
    version = venv_borg_version()
    job = system.ok("POST", "/api/jobs", {"type": "update_borg", "agent": "local", "options": {"version": version}})
    done = system.wait_job(job["id"], timeout=280)
    assert done["status"] == "completed", (done.get("error"), system.http.get(f"/api/jobs/{job['id']}/log").text)
    details = done["result"]["details"]
    installed = borg_root(system) / f"{version}-{job['id']}"
    assert details["version"] == version and details["borg"] == str(installed / "bin" / "borg")
    assert current(system) == installed.name
    log = system.http.get(f"/api/jobs/{job['id']}/log").text
    assert "borg --version" in log and f"now runs borg {version}" in log
    # The jobs after it run the new borg, and the agent says its version.
    answer = ping(system)
    assert answer["borg"] == str(borg_root(system) / "current" / "bin" / "borg")
    assert answer["borg_version"] == version
    wait_for(
        lambda: (
            next(a for a in system.ok("GET", "/api/agents")["items"] if a["name"] == "local")["borg_version"] == version
        ),
        what="the heartbeat's borg version",
    )


def test_a_version_that_does_not_exist_fails_and_the_old_borg_stays(system: UpSystem) -> None:
    before = current(system)
    used_before = ping(system)["borg"]
    job = system.ok("POST", "/api/jobs", {"type": "update_borg", "agent": "local", "options": {"version": "0.0.1"}})
    done = system.wait_job(job["id"], timeout=280)
    assert done["status"] == "failed"
    error = done["error"]
    assert error["kind"] == "update_failed" and "0.0.1" in error["message"]
    assert "keeps borg" in error["hint"] and "PIP_INDEX_URL" in error["hint"]
    assert current(system) == before
    assert not list(borg_root(system).glob("0.0.1-*")), "the failed install is left behind"
    assert ping(system)["borg"] == used_before

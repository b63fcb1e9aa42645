"""`update_agent` through the public API of a running `borgflow up`: borgflow is installed
from the agent's BORGFLOW_AGENT_SOURCE into a venv of the agent's own, verified, and the
executor restarts into it (same pid, exec) without losing the update job or one queued behind
it: the update completes after the restart, and the ping queued meanwhile runs on the new
version. An install that does not say the version asked for fails as update_failed and the
agent keeps running what it ran.

The source is a copy of this checkout with its version raised, so the test needs no index
for borgflow itself (pip fetches the build backend as for any install from source).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.version import VERSION
from tests.support.upsystem import UpSystem, data_dir, wait_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
NEW = f"{VERSION}.post7" if "+" not in VERSION else "0.1.0.post7"


def raised_copy(into: Path) -> Path:
    """This checkout's packages, with pyproject's version set to NEW."""
    src = into / "borgflow-src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("services", "shared"):
        shutil.copytree(ROOT / package, src / package, ignore=ignore)
    pyproject = (ROOT / "pyproject.toml").read_text()
    (src / "pyproject.toml").write_text(re.sub(r'(?m)^version = ".*"$', f'version = "{NEW}"', pyproject, count=1))
    return src


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpSystem]:
    work = tmp_path_factory.mktemp("agent-update")
    up = UpSystem(data_dir(), work).start(BORGFLOW_AGENT_SOURCE=str(raised_copy(work)))
    try:
        yield up
    finally:
        assert up.stop() == 0, up.log.read_text()[-2000:]


def installs_root(system: UpSystem) -> Path:
    return system.data_dir / "executor-local" / "borgflow"  # services/executor/installs.py


def current(system: UpSystem) -> str | None:
    link = installs_root(system) / "current"
    return os.readlink(link) if link.is_symlink() else None


def log_of(system: UpSystem, job_id: str) -> str:
    text: str = system.http.get(f"/api/jobs/{job_id}/log").text
    return text


def ping(system: UpSystem) -> dict[str, Any]:
    job = system.ok("POST", "/api/jobs", {"type": "ping", "agent": "local"})
    done = system.wait_job(job["id"])
    assert done["status"] == "completed", done.get("error")
    details: dict[str, Any] = done["result"]["details"]
    return details


def test_a_version_that_is_not_pep_440_is_refused(system: UpSystem) -> None:
    for version in ("latest", "1.0; rm -rf /", ">=1.0"):
        r = system.http.post(
            "/api/jobs", json={"type": "update_agent", "agent": "local", "options": {"version": version}}
        )
        assert r.status_code == 400, (version, r.text)
        assert r.json()["field"] == "options.version"
        assert "such as 1.4.5" in r.json()["detail"] and "regex" not in r.json()["detail"]


def test_the_executor_restarts_into_the_new_version_and_loses_no_job(system: UpSystem) -> None:
    update = system.ok("POST", "/api/jobs", {"type": "update_agent", "agent": "local", "options": {"version": NEW}})
    # Queued behind the update (one job at a time on an agent): it must survive the restart.
    behind = system.ok("POST", "/api/jobs", {"type": "ping", "agent": "local"})

    done = system.wait_job(update["id"], timeout=300)
    assert done["status"] == "completed", (done.get("error"), log_of(system, update["id"]))
    details = done["result"]["details"]
    installed = installs_root(system) / f"{NEW}-{update['id']}"
    assert details["version"] == NEW and details["borgflow"] == str(installed / "bin" / "borgflow")
    assert current(system) == installed.name
    log = log_of(system, update["id"])
    assert "borgflow --version" in log and f"restarted as borgflow {NEW}" in log, log

    after = system.wait_job(behind["id"], timeout=120)
    assert after["status"] == "completed" and after["attempt"] == 1, after
    assert after["result"]["details"]["borgflow_version"] == NEW
    assert ping(system)["borgflow_version"] == NEW
    wait_for(
        lambda: next(a for a in system.ok("GET", "/api/agents")["items"] if a["name"] == "local").get("online"),
        what="the agent online again",
    )
    # One outcome for the update job: it was neither failed by the restart nor retried.
    page = system.ok("GET", "/api/jobs?type=update_agent&limit=50")["items"]
    assert [j["id"] for j in page if j["status"] != "completed"] == []


def test_an_install_that_does_not_say_the_version_asked_fails_and_the_agent_keeps_its_own(system: UpSystem) -> None:
    before, running = current(system), ping(system)["borgflow_version"]
    job = system.ok("POST", "/api/jobs", {"type": "update_agent", "agent": "local", "options": {"version": "0.0.1"}})
    done = system.wait_job(job["id"], timeout=300)
    assert done["status"] == "failed", done
    error = done["error"]
    assert error["kind"] == "update_failed" and "borgflow 0.0.1" in error["message"], error
    assert f"--version said {NEW if before else running}" in error["message"], error
    assert f"keeps borgflow {running}" in error["hint"] and "BORGFLOW_AGENT_SOURCE" in error["hint"]
    assert current(system) == before
    assert not list(installs_root(system).glob("0.0.1-*")), "the failed install is left behind"
    assert ping(system)["borgflow_version"] == running

"""`package_install` through the public API of a running `borgflow up`: only packages on the
settings' package_allow_list are accepted (400 naming options.packages otherwise), and an
allowed one is installed for real by apt-get when the test runs as root on Debian."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.support.upsystem import UpSystem, data_dir

pytestmark = pytest.mark.slow

# Tiny (60 KiB), with no dependencies a Debian system lacks, and never needed by anything here.
PACKAGE = "sl"


def installed(package: str) -> bool:
    done = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True, check=False)
    return done.returncode == 0 and "install ok installed" in done.stdout


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpSystem]:
    # Its own temp dir: the embedded Postgres runs as another user that must reach it.
    up = UpSystem(data_dir(), tmp_path_factory.mktemp("packages")).start()
    try:
        yield up
    finally:
        assert up.stop() == 0, up.log.read_text()[-2000:]


def test_the_allow_list_takes_debian_package_names_only(system: UpSystem) -> None:
    r = system.http.put("/api/settings", json={"package_allow_list": ["sl", "rm -rf /"]})
    assert r.status_code == 400 and r.json()["field"] == "package_allow_list"
    assert system.ok("GET", "/api/settings")["package_allow_list"] == []


def test_a_package_not_on_the_allow_list_is_refused(system: UpSystem) -> None:
    system.ok("PUT", "/api/settings", {"package_allow_list": [PACKAGE]})
    r = system.http.post(
        "/api/jobs", json={"type": "package_install", "agent": "local", "options": {"packages": [PACKAGE, "cowsay"]}}
    )
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["field"] == "options.packages"
    assert "cowsay" in body["detail"] and "package_allow_list" in body["detail"]
    # Nothing is allowed until an admin lists it.
    system.ok("PUT", "/api/settings", {"package_allow_list": []})
    r = system.http.post(
        "/api/jobs", json={"type": "package_install", "agent": "local", "options": {"packages": [PACKAGE]}}
    )
    assert r.status_code == 400 and r.json()["field"] == "options.packages"


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("apt-get") is None, reason="installing needs root and apt-get")
def test_an_allowed_package_is_installed_with_its_output_as_the_log(system: UpSystem) -> None:
    if installed(PACKAGE):
        pytest.skip(f"{PACKAGE} is installed already: the test would not show an install (and must not remove it)")
    system.ok("PUT", "/api/settings", {"package_allow_list": [PACKAGE]})
    try:
        job = system.ok(
            "POST", "/api/jobs", {"type": "package_install", "agent": "local", "options": {"packages": [PACKAGE]}}
        )
        done = system.wait_job(job["id"], timeout=280)
        assert done["status"] == "completed", done.get("error")
        assert installed(PACKAGE)
        assert PACKAGE in done["result"]["details"]["installed"]
        log = system.http.get(f"/api/jobs/{job['id']}/log").text
        assert f"Setting up {PACKAGE}" in log
    finally:
        subprocess.run(["apt-get", "remove", "-y", "-qq", PACKAGE], capture_output=True, check=False)
        system.ok("PUT", "/api/settings", {"package_allow_list": []})

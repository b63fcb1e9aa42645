"""`s3_sync` to S3 itself, through the public API of a running `borgflow up`: moto's S3
server on localhost stands in for the bucket (Debian's rclone 1.60 has no `serve s3`),
rclone's remote comes from RCLONE_CONFIG_* variables in the executor's environment, and
the mirror read back from the bucket equals the repository byte for byte."""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.testing import free_port, wait_until
from tests.support.upsystem import UpSystem, data_dir, make_source

MOTO = Path(sys.executable).parent / "moto_server"
RCLONE = os.environ.get("BORGFLOW_RCLONE") or "rclone"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which(RCLONE) is None, reason="rclone is not installed (`make install` installs it)"),
    pytest.mark.skipif(not MOTO.exists(), reason="moto's S3 server is not installed (`make install` installs it)"),
]


@pytest.fixture(scope="module")
def s3_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """moto's S3 server, and the environment that names it to rclone as the remote `s3test`."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(MOTO), "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(url, timeout=1).status_code < 500
        except httpx.TransportError:
            return False

    try:
        wait_until(up, 30, "moto's S3 server", interval=0.1)
        yield {
            "RCLONE_CONFIG_S3TEST_TYPE": "s3",
            "RCLONE_CONFIG_S3TEST_PROVIDER": "Other",
            "RCLONE_CONFIG_S3TEST_ENDPOINT": url,
            "RCLONE_CONFIG_S3TEST_REGION": "us-east-1",
            "RCLONE_CONFIG_S3TEST_ACCESS_KEY_ID": "borgflow-test",
            "RCLONE_CONFIG_S3TEST_SECRET_ACCESS_KEY": "borgflow-test-secret",
            # A CA bundle meant for HTTPS elsewhere makes rclone's S3 client refuse its transport.
            "AWS_CA_BUNDLE": "",
        }
    finally:
        proc.terminate()
        proc.wait(10)


def rclone(env: dict[str, str], *args: str) -> None:
    done = subprocess.run([RCLONE, *args], env={**os.environ, **env}, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_repository_is_mirrored_to_an_s3_bucket(tmp_path: Path, s3_env: dict[str, str]) -> None:
    rclone(s3_env, "mkdir", "s3test:mirror")
    system = UpSystem(data_dir(), tmp_path).start(**s3_env)
    try:
        path = tmp_path / "repo"
        repo = system.ok("POST", "/api/repositories", {"name": "to-s3", "location": str(path), "agent": "local"})
        init = system.ok(
            "POST", "/api/jobs", {"type": "init", "repository_id": repo["id"], "options": {"encryption": "none"}}
        )
        assert system.wait_job(init["id"])["status"] == "completed"
        plan = system.ok(
            "POST",
            "/api/plans",
            {"name": "s3", "repository_id": repo["id"], "paths": [str(make_source(tmp_path / "src"))]},
        )
        backup = system.ok("POST", "/api/jobs", {"type": "backup", "plan_id": plan["id"]})
        assert system.wait_job(backup["id"])["status"] == "completed"

        job = system.ok(
            "POST",
            "/api/jobs",
            {
                "type": "s3_sync",
                "repository_id": repo["id"],
                "options": {"remote": "s3test:mirror/borg", "bwlimit": "4M"},
            },
        )
        done = system.wait_job(job["id"])
        assert done["status"] == "completed", done.get("error")
        assert done["progress"]["bwlimit"] == "4M" and done["progress"]["bytes_done"] > 0
    finally:
        assert system.stop() == 0, system.log.read_text()[-2000:]

    back = tmp_path / "back"
    rclone(s3_env, "copy", "s3test:mirror/borg", str(back))
    names = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())
    assert names == sorted(str(p.relative_to(back)) for p in back.rglob("*") if p.is_file())
    assert filecmp.cmpfiles(path, back, names, shallow=False)[1:] == ([], [])

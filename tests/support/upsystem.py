"""`borgflow up` as a subprocess, driven over its public HTTP API, as a user would."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from shared.testing import GaveUp, free_port, wait_until

TERMINAL = ("completed", "warning", "failed", "cancelled")

_DATA_DIRS: list[Path] = []


def data_dir(prefix: str = "bf-e2e-") -> Path:
    """A data dir for `borgflow up`, removed when the test session ends (tests/conftest.py).

    Outside pytest's tmp: the embedded Postgres runs as another user that must reach it.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    _DATA_DIRS.append(path)
    return path


def remove_data_dirs() -> None:
    while _DATA_DIRS:
        shutil.rmtree(_DATA_DIRS.pop(), ignore_errors=True)


def borgflow_exe() -> str:
    return str(Path(sys.executable).parent / "borgflow")


def borg_exe() -> str:
    return str(Path(sys.executable).parent / "borg")


class UpSystem:
    def __init__(self, data_dir: Path, work: Path, token: str = "e2e-admin-token-0123456789") -> None:
        self.data_dir = data_dir
        self.work = work
        self.token = token
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = work / f"up-{self.port}.log"
        self.http = httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def start(self, timeout: float = 120, **extra_env: str) -> UpSystem:
        env = dict(os.environ, BORGFLOW_ADMIN_TOKEN=self.token, **extra_env)
        out = self.log.open("wb")
        self.proc = subprocess.Popen(
            [borgflow_exe(), "up", "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(self.data_dir)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()  # the child has its own copy

        def healthy() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise GaveUp(f"borgflow up exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            return httpx.get(self.base + "/api/health", timeout=2).status_code == 200

        try:
            wait_until(healthy, timeout, "borgflow up", interval=0.2)
        except TimeoutError:
            # Never healthy: no test will stop it, so it is stopped here rather than left running.
            self.stop()
            raise AssertionError(f"not healthy: {self.log.read_text()[-3000:]}") from None
        return self

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM the whole process group, as a service manager would; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            raise AssertionError(f"borgflow up did not stop on SIGTERM: {self.log.read_text()[-2000:]}") from None

    def ok(self, method: str, path: str, json: Any = None, expect: int | tuple[int, ...] = (200, 201, 202)) -> Any:
        r = self.http.request(method, path, json=json)
        codes = (expect,) if isinstance(expect, int) else expect
        assert r.status_code in codes, f"{method} {path} -> {r.status_code}: {r.text[:500]}"
        return r.json() if r.content and "json" in r.headers.get("content-type", "") else r.text

    def wait_job(self, job_id: str, timeout: float = 120) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            j: dict[str, Any] = self.ok("GET", f"/api/jobs/{job_id}")
            return j if j["status"] in TERMINAL else None

        try:
            result: dict[str, Any] = wait_until(finished, timeout, f"job {job_id}", interval=0.1)
        except TimeoutError:
            raise AssertionError(f"job {job_id} did not finish: {self.log.read_text()[-3000:]}") from None
        return result


def make_source(root: Path, files: int = 50, size: int = 2048) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        d = root / f"d{i % 5}"
        d.mkdir(exist_ok=True)
        (d / f"f{i}.bin").write_bytes(os.urandom(size // 2) + bytes(size // 2))
    return root


def borg_list(repo: Path, passphrase: str, base_dir: Path) -> list[str]:
    env = dict(
        os.environ,
        BORG_PASSPHRASE=passphrase,
        BORG_BASE_DIR=str(base_dir),
        BORG_RELOCATED_REPO_ACCESS_IS_OK="yes",
    )
    out = subprocess.run(
        [borg_exe(), "list", "--short", str(repo)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def wait_for(check: Any, timeout: float = 30, what: str = "condition") -> Any:
    return wait_until(check, timeout, what, interval=0.1)


__all__ = ["UpSystem", "borg_list", "make_source", "time", "wait_for"]

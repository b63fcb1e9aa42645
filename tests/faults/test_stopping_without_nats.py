"""A service told to stop while NATS is unreachable still exits, and soon: a service manager's
SIGTERM must never have to end in its SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from shared.testing import free_port
from tests.support.cluster import exe

pytestmark = pytest.mark.slow

SERVICES = {
    "api": ["api", "--listen", "127.0.0.1:{port}"],
    "dispatcher": ["dispatcher"],
    "executor": ["executor", "--agent", "lonely"],
    "scheduler": ["scheduler"],
    "notifier": ["notifier"],
    "projector": ["projector"],
}
EXIT_WITHIN_S = 10.0


@pytest.mark.parametrize("service", list(SERVICES))
async def test_sigterm_without_nats_exits_within_10s(service: str, database_url: str, tmp_path: Path) -> None:
    nowhere = f"nats://127.0.0.1:{free_port()}"  # nothing listens there
    env = dict(
        os.environ,
        BORGFLOW_NATS_URL=nowhere,
        BORGFLOW_DATABASE_URL=database_url,
        BORGFLOW_DATA_DIR=str(tmp_path),
        BORGFLOW_API_URL=f"http://127.0.0.1:{free_port()}",
    )
    args = [a.format(port=free_port()) for a in SERVICES[service]]
    log = tmp_path / "service.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([exe(), *args], env=env, stdout=out, stderr=subprocess.STDOUT)  # noqa: ASYNC220
    try:
        # Wait until it has tried NATS (and is retrying): its log says so.
        deadline = time.monotonic() + 30
        while "nats error" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, f"{service} exited early: {log.read_text()[-2000:]}"
            await asyncio.sleep(0.05)
        assert "nats error" in log.read_text(), f"{service} never tried NATS: {log.read_text()[-2000:]}"
        stopped_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, EXIT_WITHIN_S + 5)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{service} did not exit within {EXIT_WITHIN_S + 5}s of SIGTERM: {log.read_text()[-2000:]}")
        took = time.monotonic() - stopped_at
        assert took < EXIT_WITHIN_S, f"{service} took {took:.1f}s to exit"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

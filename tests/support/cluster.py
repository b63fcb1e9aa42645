"""borgflow as separate processes (one per service) on a private NATS and Postgres, for fault tests.

Each piece can be killed with SIGKILL and started again, as a crash and a
restart by a service manager would.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from shared import db, tokens
from shared.testing import NatsServer, embedded_postgres, free_port, wait_until
from tests.support.natscluster import NatsCluster

ADMIN = "fault-admin-token-0123456789"
# Every executor enrols with it for a token of its own agent, as in compose.
JOIN_TOKEN = "fault-join-token-0123456789"


def exe() -> str:
    return str(Path(sys.executable).parent / "borgflow")


class Cluster:
    """Every service as its own process. With `nats_servers=3`, NATS is a real 3-server
    cluster and every stream and bucket has 3 replicas; `dispatchers` and `schedulers`
    run that many of each (one active, the others standing by)."""

    def __init__(
        self,
        agents: tuple[str, ...] = ("a1", "a2", "a3"),
        *,
        nats_servers: int = 1,
        dispatchers: int = 1,
        schedulers: int = 1,
    ) -> None:
        # Its own temp dir, not pytest's: Postgres runs as another user that must reach it,
        # and pytest prunes old base dirs of concurrent sessions.
        self.root = Path(tempfile.mkdtemp(prefix="bf-cluster-"))
        self.agents = agents
        self.dispatchers = dispatchers
        self.schedulers = schedulers
        self.nats_cluster = NatsCluster(self.root / "nats-cluster", nats_servers) if nats_servers > 1 else None
        self.replicas = nats_servers
        self.nats = NatsServer(self.root / "nats")
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}"
        self.pg: Any = None
        self.database_url = ""
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.commands_override: dict[str, list[str]] = {}
        self.logs = self.root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    # ---------------------------------------------------------------- servers

    @property
    def nats_url(self) -> str:
        return self.nats_cluster.url if self.nats_cluster is not None else self.nats.url

    def start_servers(self) -> None:
        if self.nats_cluster is not None:
            self.nats_cluster.start()
        else:
            self.nats.start(log_file=self.logs / "nats.log")
        self.pg = embedded_postgres(self.root / "pg", cleanup="delete")
        self.database_url = self.pg.get_uri("borgflow")

    async def prepare_database(self) -> None:
        """Create the database (and wait for a NATS cluster to elect its JetStream leader)."""
        if self.nats_cluster is not None:
            await self.nats_cluster.ready()
        await db.ensure_database(self.database_url)
        conn = await db.connect(self.database_url)
        try:
            await db.migrate(conn)
            await tokens.ensure_token(conn, "join", "join", JOIN_TOKEN)
        finally:
            await conn.close()

    def kill_postgres(self) -> None:
        pid = self.pg.get_pid()
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not _alive(pid), 10, "postgres to die")

    def start_postgres(self) -> None:
        self.pg.ensure_postgres_running()

    # ---------------------------------------------------------------- services

    def env(self, **extra: str) -> dict[str, str]:
        return dict(
            os.environ,
            BORGFLOW_NATS_URL=self.nats_url,
            BORGFLOW_STREAM_REPLICAS=str(self.replicas),
            BORGFLOW_DATABASE_URL=self.database_url,
            BORGFLOW_API_URL=self.api_url,
            BORGFLOW_TOKEN=JOIN_TOKEN,
            BORGFLOW_ADMIN_TOKEN=ADMIN,
            BORGFLOW_HEARTBEAT_S="1",
            **extra,
        )

    def commands(self) -> dict[str, list[str]]:
        out = {
            "api": [exe(), "api", "--listen", f"127.0.0.1:{self.port}"],
            "projector": [exe(), "projector"],
            "notifier": [exe(), "notifier"],
        }
        for role, count in (("dispatcher", self.dispatchers), ("scheduler", self.schedulers)):
            for i in range(count):
                out[role if i == 0 else f"{role}-{i + 1}"] = [exe(), role]
        for a in self.agents:
            out[f"executor-{a}"] = [exe(), "executor", "--agent", a]
        return out

    def start(self, name: str) -> None:
        cmd = self.commands_override.get(name) or self.commands()[name]
        extra = {}
        if name.startswith("executor-"):
            extra["BORGFLOW_DATA_DIR"] = str(self.root / name)
        elif name == "api":  # its secret key file, kept across the api's restarts (not in $HOME)
            extra["BORGFLOW_DATA_DIR"] = str(self.root / "api")
        with (self.logs / f"{name}.log").open("ab") as out:
            self.procs[name] = subprocess.Popen(cmd, env=self.env(**extra), stdout=out, stderr=subprocess.STDOUT)

    def start_all(self) -> None:
        for name in self.commands():
            self.start(name)
        wait_until(self.healthy, 60, "the api")

    def healthy(self) -> bool:
        return httpx.get(self.api_url + "/api/health", timeout=2).status_code == 200

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        proc.kill()
        proc.wait(10)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.nats.stop()
        if self.nats_cluster is not None:
            self.nats_cluster.stop()
        if self.pg is not None:
            self.pg.cleanup()
        # Logs stay for a post-mortem; the bulky state goes.
        for bulky in ("pg", "nats", "nats-cluster"):
            shutil.rmtree(self.root / bulky, ignore_errors=True)

    # ---------------------------------------------------------------- client

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.api_url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10)

    async def wait_healthy(self, timeout: float = 60) -> None:
        await asyncio.to_thread(wait_until, self.healthy, timeout, "the api")

    def tail(self, name: str, chars: int = 3000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True

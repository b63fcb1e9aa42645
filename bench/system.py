"""The system under measurement: a private NATS and Postgres, every service its own process.

Each service serves its probes on a port of its own, so a bench can tell when a restarted
one is ready (GET /healthz 200) and read its RSS. Nothing here measures; bench modules do.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from shared import db, tokens
from shared.testing import NatsServer, embedded_postgres, free_port

ADMIN = "bench-admin-token-0123456789"
JOIN = "bench-join-token-0123456789"
AGENT = "local"


def borgflow() -> str:
    return str(Path(sys.executable).parent / "borgflow")


class System:
    def __init__(self, services: tuple[str, ...] = ("api", "projector", "dispatcher", "executor")) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="bf-bench-"))
        self.services = services
        self.nats = NatsServer(self.root / "nats")
        self.pg: Any = None
        self.database_url = ""
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}"
        self.metrics = {name: free_port() for name in services}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs = self.root / "logs"
        self.logs.mkdir()

    async def start(self) -> None:
        self.nats.start(log_file=self.logs / "nats.log")
        self.pg = embedded_postgres(self.root / "pg", cleanup="delete")
        self.database_url = self.pg.get_uri("borgflow")
        await db.ensure_database(self.database_url)
        conn = await db.connect(self.database_url)
        try:
            await db.migrate(conn)
            await tokens.ensure_token(conn, "admin", "admin", ADMIN)
            await tokens.ensure_token(conn, "join", "join", JOIN)
        finally:
            await conn.close()
        for name in self.services:
            self.start_service(name)
        for name in self.services:
            await self.ready(name)

    def env(self, name: str) -> dict[str, str]:
        return dict(
            os.environ,
            BORGFLOW_NATS_URL=self.nats.url,
            BORGFLOW_DATABASE_URL=self.database_url,
            BORGFLOW_API_URL=self.api_url,
            BORGFLOW_ADMIN_TOKEN=ADMIN,
            BORGFLOW_TOKEN=JOIN,
            BORGFLOW_DATA_DIR=str(self.root / "agent"),
            BORGFLOW_METRICS_LISTEN=f"127.0.0.1:{self.metrics[name]}",
            BORGFLOW_LOG_LEVEL="WARNING",
        )

    def start_service(self, name: str) -> None:
        args = {"api": ["api", "--listen", f"127.0.0.1:{self.port}"], "executor": ["executor", "--agent", AGENT]}
        with (self.logs / f"{name}.log").open("ab") as out:
            self.procs[name] = subprocess.Popen(
                [borgflow(), *args.get(name, [name])], env=self.env(name), stdout=out, stderr=subprocess.STDOUT
            )

    async def ready(self, name: str, timeout: float = 600.0) -> float:
        """Seconds until the service's /healthz answers 200."""
        began = time.monotonic()
        url = f"http://127.0.0.1:{self.metrics[name]}/healthz"
        async with httpx.AsyncClient(timeout=2) as http:
            while time.monotonic() - began < timeout:
                proc = self.procs[name]
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited {proc.returncode}: {self.tail(name)}")
                try:
                    if (await http.get(url)).status_code == 200:
                        return time.monotonic() - began
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.02)
        raise TimeoutError(f"{name} not ready in {timeout}s: {self.tail(name)}")

    async def restart(self, name: str) -> float:
        """Kill -9 a service, start it again; seconds from the start until it is ready."""
        self.procs[name].kill()
        self.procs[name].wait()
        self.start_service(name)
        return await self.ready(name)

    def rss_mib(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, proc in self.procs.items():
            with contextlib.suppress(psutil.Error):
                out[name] = round(psutil.Process(proc.pid).memory_info().rss / 2**20, 1)
        return out

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) so far of every service, NATS, and Postgres's processes."""
        pids: dict[str, list[int]] = {name: [proc.pid] for name, proc in self.procs.items()}
        if self.nats.proc is not None:
            pids["nats"] = [self.nats.proc.pid]
        pg_dir = str(self.root / "pg")
        pids["postgres"] = [
            p.pid
            for p in psutil.process_iter(["name", "cmdline"])
            if p.info["name"] == "postgres" and any(pg_dir in part for part in (p.info["cmdline"] or []))
        ]
        # A backend's children (one per connection) carry no data dir: count the postmaster's.
        for pid in list(pids["postgres"]):
            with contextlib.suppress(psutil.Error):
                pids["postgres"] += [c.pid for c in psutil.Process(pid).children(recursive=True)]
        out: dict[str, float] = {}
        for name, group in pids.items():
            total = 0.0
            for pid in set(group):
                with contextlib.suppress(psutil.Error):
                    t = psutil.Process(pid).cpu_times()
                    total += t.user + t.system
            out[name] = total
        return out

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.api_url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60)

    def tail(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.nats.stop()
        if self.pg is not None:
            self.pg.cleanup()
        shutil.rmtree(self.root, ignore_errors=True)

"""A real 3-server NATS cluster with JetStream on loopback (nats-server from the venv).

Each server has its own client port, cluster port and store; the routes name all
three. `kill(name)` is a SIGKILL, `start(name)` brings the same server (and store)
back, as a restarted machine would.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import nats.errors
from nats.js.api import StreamInfo

from shared.testing import NatsServer, free_port


class NatsCluster:
    def __init__(self, root: Path, size: int = 3, name: str = "borgflow") -> None:
        self.cluster_ports = {f"n{i + 1}": free_port() for i in range(size)}
        routes = ",".join(f"nats://127.0.0.1:{p}" for p in self.cluster_ports.values())
        self.servers: dict[str, NatsServer] = {}
        self.logs = root / "logs"
        for server_name, cport in self.cluster_ports.items():
            args = [
                "-n",
                server_name,
                "--cluster_name",
                name,
                "--cluster",
                f"nats://127.0.0.1:{cport}",
                "--routes",
                routes,
            ]
            self.servers[server_name] = NatsServer(root / server_name, extra_args=args)

    @property
    def url(self) -> str:
        """Every server, comma-separated, as BORGFLOW_NATS_URL takes them."""
        return ",".join(s.url for s in self.servers.values())

    def start(self, name: str | None = None) -> NatsCluster:
        self.logs.mkdir(parents=True, exist_ok=True)
        for server_name, server in self.servers.items():
            if name is None or name == server_name:
                server.start(log_file=self.logs / f"nats-{server_name}.log")
        return self

    def kill(self, name: str) -> None:
        self.servers[name].kill()

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()

    async def ready(self, timeout: float = 30.0) -> None:
        """Wait until JetStream answers through the cluster (its meta leader is elected)."""
        nc = await nats.connect(servers=self.url.split(","), connect_timeout=2)
        try:
            js = nc.jetstream()
            deadline = asyncio.get_running_loop().time() + timeout
            while True:
                try:
                    await js.account_info()
                    return
                except Exception:
                    if asyncio.get_running_loop().time() > deadline:
                        raise
                    await asyncio.sleep(0.2)
        finally:
            await nc.close()

    async def stream(self, stream: str, timeout: float = 30.0) -> StreamInfo:
        """The stream's info, asked again while a killed leader's replicas elect a new one."""
        nc = await nats.connect(servers=self.url.split(","), connect_timeout=2)
        try:
            deadline = asyncio.get_running_loop().time() + timeout
            while True:
                try:
                    return await nc.jetstream().stream_info(stream)
                except nats.errors.TimeoutError:
                    if asyncio.get_running_loop().time() > deadline:
                        raise
        finally:
            await nc.close()

    async def leader_of(self, stream: str) -> str:
        """The name of the server leading `stream`'s replicas."""
        info = await self.stream(stream)
        assert info.cluster is not None and info.cluster.leader, f"{stream} has no leader: {info.cluster}"
        return info.cluster.leader

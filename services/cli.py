"""The `borgflow` command: the one composition root that may import every service."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from services.client.cli import COMMANDS as CLIENT_COMMANDS
from services.client.cli import add_commands as add_client_commands
from shared.config import Settings, default_data_dir, settings_from_env
from shared.runtime import run_service, setup_logging


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="borgflow", description="A job system for Borg backups.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="run the whole system on this machine")
    up.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT of the api and pages")
    up.add_argument("--data-dir", type=Path, default=None, help=f"state directory (default {default_data_dir()})")
    up.add_argument("--nats-url", default=None, help="use this NATS instead of a private nats-server")
    up.add_argument("--database-url", default=None, help="use this Postgres instead of an embedded one")

    api = sub.add_parser("api", help="run the api (REST, websockets, pages)")
    api.add_argument("--listen", default=None, help="HOST:PORT (default 127.0.0.1:8080)")
    sub.add_parser("dispatcher", help="run the dispatcher")
    ex = sub.add_parser("executor", help="run an executor (agent) on this machine")
    ex.add_argument("--agent", default=None, help="agent name (default $BORGFLOW_AGENT or the host name)")
    sub.add_parser("scheduler", help="run the scheduler")
    sub.add_parser("notifier", help="run the notifier")
    pr = sub.add_parser("projector", help="run the projector")
    pr.add_argument("--rebuild", action="store_true", help="drop the read model and replay the streams first")
    add_client_commands(sub)
    return p


def _settings(**overrides: object) -> Settings:
    return settings_from_env(os.environ, **overrides)


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    cmd = args.command
    if cmd in CLIENT_COMMANDS:
        from services.client.cli import run as run_client

        sys.exit(run_client(args))
    if cmd == "up":
        from services.up import UpOptions, up

        setup_logging()
        opts = UpOptions(
            listen=args.listen,
            data_dir=args.data_dir or default_data_dir(),
            nats_url=args.nats_url,
            database_url=args.database_url,
            agent=os.environ.get("BORGFLOW_AGENT") or "local",
        )
        sys.exit(up(opts))
    if cmd == "api":
        from services.api.app import run as api

        host, port = None, None
        if args.listen:
            h, _, p = args.listen.rpartition(":")
            host, port = h or "127.0.0.1", int(p)
        run_service(api, _settings(listen_host=host, listen_port=port))
    elif cmd == "dispatcher":
        from services.dispatcher.app import run as dispatcher

        run_service(dispatcher, _settings())
    elif cmd == "executor":
        from services.executor.app import run as executor

        agent = args.agent or os.environ.get("BORGFLOW_AGENT") or os.uname().nodename
        run_service(executor, _settings(agent=agent))
    elif cmd == "scheduler":
        from services.scheduler.app import run as scheduler

        run_service(scheduler, _settings())
    elif cmd == "notifier":
        from services.notifier.app import run as notifier

        run_service(notifier, _settings())
    elif cmd == "projector":
        from services.projector.app import run as projector

        rebuild = bool(args.rebuild)

        async def service(settings: Settings, stop: asyncio.Event) -> None:
            await projector(settings, stop, rebuild_first=rebuild)

        run_service(service, _settings())


if __name__ == "__main__":
    main()

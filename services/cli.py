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
from shared.exceptions import ConfigError
from shared.logs import setup_logging
from shared.runtime import run_service
from shared.version import VERSION


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="borgflow", description="A job system for Borg backups.")
    p.add_argument("--version", action="version", version=f"borgflow {VERSION}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="run the whole system on this machine")
    up.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT of the api and pages")
    up.add_argument("--data-dir", type=Path, default=None, help=f"state directory (default {default_data_dir()})")
    up.add_argument("--nats-url", default=None, help="use this NATS instead of a private nats-server")
    up.add_argument("--database-url", default=None, help="use this Postgres instead of an embedded one")
    up.add_argument("--verbose", action="store_true", help="log at DEBUG, libraries' chatter included")

    api = sub.add_parser("api", help="run the api (REST, websockets, pages)")
    api.add_argument("--listen", default=None, help="HOST:PORT (default 127.0.0.1:8080)")
    sub.add_parser("dispatcher", help="run the dispatcher")
    ex = sub.add_parser("executor", help="run an executor (agent) on this machine")
    ex.add_argument("--agent", default=None, help="agent name (default $BORGFLOW_AGENT or the host name)")
    sub.add_parser("scheduler", help="run the scheduler")
    sub.add_parser("notifier", help="run the notifier")
    pr = sub.add_parser("projector", help="run the projector")
    pr.add_argument("--rebuild", action="store_true", help="drop the read model and replay the streams first")
    secrets = sub.add_parser("secrets", help="the key the secrets in Postgres are encrypted with")
    secrets_sub = secrets.add_subparsers(dest="secrets_command", required=True, metavar="ACTION")
    rotate = secrets_sub.add_parser(
        "rotate",
        help="re-encrypt every secret under a new key, while borgflow runs",
        description="With the key file DATA_DIR/secret-key: a new key, every secret re-encrypted, the old key"
        " dropped. With BORGFLOW_SECRET_KEY: prints a new key and the steps, or (given new,old) re-encrypts"
        " under the first. Reads BORGFLOW_DATABASE_URL (with `borgflow up`: from DATA_DIR/borgflow.env).",
    )
    rotate.add_argument("--data-dir", type=Path, default=None, help="the key file's dir (default $BORGFLOW_DATA_DIR)")
    add_client_commands(sub)
    return p


def _settings(**overrides: object) -> Settings:
    try:
        return settings_from_env(os.environ, **overrides)
    except ConfigError as e:
        print(f"borgflow: {e}", file=sys.stderr)
        sys.exit(2)


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    cmd = args.command
    if cmd in CLIENT_COMMANDS:
        from services.client.cli import run as run_client

        sys.exit(run_client(args))
    if cmd == "up":
        from services.up import UpOptions, up

        setup_logging(os.environ, verbose=args.verbose)
        opts = UpOptions(
            listen=args.listen,
            data_dir=args.data_dir or default_data_dir(),
            nats_url=args.nats_url,
            database_url=args.database_url,
            agent=os.environ.get("BORGFLOW_AGENT") or "local",
        )
        try:
            sys.exit(up(opts))
        except ConfigError as e:
            print(f"borgflow up: {e}", file=sys.stderr)
            sys.exit(2)
    if cmd == "secrets":
        from services.secrets_rotate import RotationRefused, rotate
        from shared.db import TRANSIENT

        settings = _settings(data_dir=str(args.data_dir) if args.data_dir else None)
        try:
            asyncio.run(rotate(settings, sys.stdout))
        except ConfigError as e:
            print(f"borgflow secrets rotate: {e}", file=sys.stderr)
            sys.exit(2)
        except RotationRefused as e:
            print(f"borgflow secrets rotate: {e}", file=sys.stderr)
            sys.exit(1)
        except TRANSIENT as e:  # the URL may hold a password: name the variable, not its value
            print(f"borgflow secrets rotate: Postgres (BORGFLOW_DATABASE_URL) unreachable: {e!r}", file=sys.stderr)
            sys.exit(1)
        return
    if cmd == "api":
        from services.api.app import run as api

        host, port = None, None
        if args.listen:
            h, _, p = args.listen.rpartition(":")
            host, port = h or "127.0.0.1", int(p)
        run_service("api", api, _settings(listen_host=host, listen_port=port))
    elif cmd == "dispatcher":
        from services.dispatcher.app import run as dispatcher

        run_service("dispatcher", dispatcher, _settings())
    elif cmd == "executor":
        agent = args.agent or os.environ.get("BORGFLOW_AGENT") or os.uname().nodename
        from services.executor.config import options_from_env

        # Its jobs are interrupted and reported on stop: give that its own timeouts, not the
        # others' grace (a stop before NATS answered still ends at once).
        timing = options_from_env(os.environ)
        grace = timing.shutdown_timeout_s + timing.cancel_grace_s + 5
        settings = _settings(agent=agent)
        _executor(settings, agent, list(sys.argv[1:] if argv is None else argv), grace)
    elif cmd == "scheduler":
        from services.scheduler.app import run as scheduler

        run_service("scheduler", scheduler, _settings())
    elif cmd == "notifier":
        from services.notifier.app import run as notifier

        run_service("notifier", notifier, _settings())
    elif cmd == "projector":
        from services.projector.app import run as projector

        rebuild = bool(args.rebuild)

        async def service(settings: Settings, stop: asyncio.Event) -> None:
            await projector(settings, stop, rebuild_first=rebuild)

        run_service("projector", service, _settings())


def _executor(settings: Settings, agent: str, argv: list[str], grace_s: float) -> None:
    """Run the executor as the borgflow an update_agent installed (installs.py), if one did."""
    from services.executor import installs
    from services.executor.app import run as executor
    from services.executor.exceptions import RelaunchRequested

    root = installs.agent_root(settings.data_dir or default_data_dir(), agent)
    target = installs.relaunch_target(root)
    if target is not None and os.environ.get(installs.RELAUNCHED) != str(target):
        _become(target, argv)
    try:
        run_service("executor", executor, settings, grace_s=grace_s)
    except RelaunchRequested as e:
        _become(Path(e.exe), argv)
        sys.exit(75)  # EX_TEMPFAIL: a service manager starts it again, and that start relaunches


def _become(exe: Path, argv: list[str]) -> None:
    """exec `exe` with `argv` (returns only when that fails, saying so)."""
    from services.executor import installs

    try:
        installs.relaunch(exe, argv)
    except OSError as e:
        print(f"borgflow executor: cannot run {exe} ({e}); going on with borgflow {VERSION}", file=sys.stderr)


if __name__ == "__main__":
    main()

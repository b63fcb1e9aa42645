"""Running a service process: logging set-up, a stop event wired to SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable

from shared.config import Settings, settings_from_env

Service = Callable[[Settings, asyncio.Event], Awaitable[None]]


class _Formatter(logging.Formatter):
    """One line per record, with the structured `extra` fields appended as key=value."""

    _plain = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
        "message",
        "asctime",
        "taskName",
    }

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = {k: v for k, v in record.__dict__.items() if k not in self._plain}
        if extras:
            line += " " + " ".join(f"{k}={v}" for k, v in sorted(extras.items()))
        return line


def setup_logging(level: str | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel((level or os.environ.get("BORGFLOW_LOG_LEVEL") or "INFO").upper())
    # Per-request access lines drown the job trail; errors still show.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


def run_service(service: Service, settings: Settings | None = None) -> None:
    """Run one service until SIGINT/SIGTERM."""
    setup_logging()
    settings = settings or settings_from_env(os.environ)

    async def main() -> None:
        stop = asyncio.Event()
        stop_on_signals(stop)
        await service(settings, stop)

    asyncio.run(main())

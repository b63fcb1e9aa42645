"""Running a service process: logs, traces, probes, and a stop that always ends the process.

SIGINT/SIGTERM set the service's stop event; a service that has not returned
STOP_GRACE_S later (stuck connecting to a NATS that is not there, say) is
cancelled, and cancelled again should a library swallow the cancellation, so a
service manager's stop never waits for its kill timeout.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from shared import probes, tracing
from shared.config import Settings, settings_from_env
from shared.exceptions import ConfigError
from shared.logs import setup_logging

log = logging.getLogger(__name__)

Service = Callable[[Settings, asyncio.Event], Awaitable[None]]

# How long a stopping service may take before it is cancelled: well inside the 10 s
# that compose and Kubernetes give before they kill.
STOP_GRACE_S = 7.0
CANCEL_AGAIN_S = 0.5

__all__ = [
    "STOP_GRACE_S",
    "Service",
    "cancel_and_wait",
    "resilient",
    "run_service",
    "run_until_stopped",
    "stop_on_signals",
]


def stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def cancel_and_wait(*tasks: asyncio.Task[Any]) -> None:
    """Cancel tasks and wait for their end, cancelling again if a cancellation is lost.

    Python 3.11's asyncio.wait_for swallows a cancellation that arrives together with
    its result (nats-py awaits with it everywhere), and the task then carries on. A
    task that had failed on its own is logged, not raised: the caller is stopping.
    """
    pending = {t for t in tasks if not t.done()}
    while pending:
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=CANCEL_AGAIN_S)
    for t in tasks:
        if not t.cancelled() and t.exception() is not None:
            log.error("%s had failed", t.get_name(), exc_info=t.exception())


async def resilient(name: str, run: Callable[[], Awaitable[None]], pause_s: float = 0.5) -> None:
    """Run `run()` again whenever it fails, until cancelled: one follower's trouble with NATS
    (a cluster electing a leader answers timeouts for seconds) must not end its service."""
    while True:
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.warning("%s failed, starting it again: %s: %s", name, type(e).__name__, e)
            await asyncio.sleep(pause_s)


async def run_until_stopped(work: Awaitable[None], stop: asyncio.Event, grace_s: float = STOP_GRACE_S) -> None:
    """Run `work` until it returns; once `stop` is set, give it `grace_s`, then cancel it."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            _, late = await asyncio.wait({task}, timeout=grace_s)
            if late:
                log.warning("still stopping after %gs: cancelling", grace_s)
                await cancel_and_wait(task)
                return
        task.result()  # the service's own error, if it failed
    finally:
        stopping.cancel()
        if not task.done():  # we were cancelled ourselves
            await cancel_and_wait(task)


def run_service(
    name: str,
    service: Service,
    settings: Settings | None = None,
    *,
    verbose: bool = False,
    grace_s: float = STOP_GRACE_S,
) -> None:
    """Run one service (named for logs and traces) until SIGINT/SIGTERM; cancel it `grace_s` after."""
    setup_logging(os.environ, verbose=verbose)
    try:
        settings = settings or settings_from_env(os.environ)
        if settings.metrics_listen:
            probes.split_listen(settings.metrics_listen)
    except (ConfigError, ValueError) as e:
        print(f"borgflow {name}: {e}", file=sys.stderr)
        sys.exit(2)
    tracing.configure(name, os.environ)

    async def main() -> None:
        stop = asyncio.Event()
        stop_on_signals(stop)
        side: asyncio.Task[None] | None = None
        probes.starting(name)  # not healthy before the service says so itself
        if settings.metrics_listen:
            side = asyncio.create_task(probes.serve(settings.metrics_listen, stop), name="probes")
        try:
            await run_until_stopped(service(settings, stop), stop, grace_s)
        finally:
            stop.set()
            if side is not None:
                await cancel_and_wait(side)

    try:
        asyncio.run(main())
    finally:
        tracing.shutdown()

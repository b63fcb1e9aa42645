"""The agent's heartbeat: who it is, what it runs, that it is alive."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from nats.js import JetStreamContext

from services.executor.hostinfo import HostFacts
from shared import bus
from shared.events import AgentHeartbeat, HeartbeatData
from shared.version import VERSION

log = logging.getLogger(__name__)


def heartbeat(facts: HostFacts, running: list[str], interval_s: float) -> AgentHeartbeat:
    return AgentHeartbeat(
        data=HeartbeatData(
            agent=facts.agent,
            host=facts.host,
            borg_version=facts.borg_version,
            borgflow_version=VERSION,
            slots=1,
            running=running,
            interval_s=interval_s,
            pid=facts.pid,
        )
    )


async def beat(
    js: JetStreamContext,
    facts: Callable[[], HostFacts],
    running: Callable[[], list[str]],
    interval_s: float,
    stop: asyncio.Event,
) -> None:
    """Publish a heartbeat now, then every `interval_s`, until `stop` is set."""
    while not stop.is_set():
        try:
            await bus.publish(js, heartbeat(facts(), running(), interval_s))
        except Exception as e:  # NATS away: the next beat tries again; missing ones mark us offline
            log.warning("heartbeat failed: %s", e, extra={"agent": facts().agent})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)

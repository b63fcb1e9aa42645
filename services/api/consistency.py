"""Read-your-events: answering from a read model that holds every job event appended so far.

The projector folds BORGFLOW_JOBS into Postgres a moment after each event. A page that
subscribes to the events and then reads must not get an answer older than the events
it will never see again; with `consistent=true` a list waits (briefly) for the jobs
projection to reach the stream's end as it was when the request came in.
"""

from __future__ import annotations

import asyncio
import logging

from services.api import queries
from services.api.runtime import Runtime
from shared.streams import JOBS

log = logging.getLogger(__name__)

# The jobs projection's checkpoint name (services/projector/store.py writes it).
CHECKPOINT = "jobs"
CATCH_UP_S = 1.0
POLL_S = 0.01


async def wait_for_projection(rt: Runtime, timeout: float = CATCH_UP_S) -> bool:
    """Wait until the jobs projection holds every job event appended before now.

    False when it did not within `timeout` (the projector is away or far behind): the
    caller answers from what the read model has, as without waiting.
    """
    target = int((await rt.js.stream_info(JOBS)).state.last_seq or 0)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while await queries.checkpoint(rt.pool, CHECKPOINT) < target:
        if loop.time() >= deadline:
            log.info("answering before the jobs projection caught up", extra={"action": "consistency", "seq": target})
            return False
        await asyncio.sleep(POLL_S)
    return True

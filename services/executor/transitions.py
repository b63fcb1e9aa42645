"""The executor's two compare-and-set transitions: claiming a sent job, and ending it.

Both append to the job's subject with `Nats-Expected-Last-Subject-Sequence`, so a job
requeued or cancelled meanwhile is never started, and a job someone else already ended
is never ended twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from nats.js import JetStreamContext

from shared import bus
from shared.events import TERMINAL, JobStarted, Outcome, StartedData
from shared.exceptions import ConcurrencyConflict

log = logging.getLogger(__name__)

MAX_CONFLICTS = 20
MAX_BACKOFF_S = 5.0
RECONNECT_POLL_S = 0.1


async def claim(js: JetStreamContext, job_id: str, sent_seq: int, data: StartedData) -> int | None:
    """Append `job.started` only if the sent event is still the job's last; its seq, else None."""
    try:
        ack = await bus.publish(js, JobStarted(job_id=job_id, data=data), expect_last_seq=sent_seq)
    except ConcurrencyConflict:
        return None
    return int(ack.seq)


async def finish(
    js: JetStreamContext,
    event: Outcome,
    expect_seq: int,
    *,
    connected: Callable[[], bool] | None = None,
    patience_s: float | None = None,
) -> bool:
    """Append the job's terminal event; False when the job had already ended (ours is dropped).

    A conflict means something was appended since `expect_seq` (typically a
    cancel_requested): reload the job and, while it is still active, try again on top of
    it. NATS errors are retried with backoff until the event lands (or for `patience_s`,
    then False); while `connected()` says the connection is down nothing is tried. The
    same event id is reused, so a publish that landed but lost its ack is deduplicated by
    the server, and the reload after it sees the job ended.
    """
    job_id = event.job_id
    if job_id is None:
        raise ValueError(f"{event.type} without a job_id")
    extra = {"job_id": job_id, "ours": event.type}
    expect: int | None = expect_seq
    conflicts = 0
    delay = 0.2
    troubled = False
    loop = asyncio.get_running_loop()
    deadline = None if patience_s is None else loop.time() + patience_s
    while True:
        if deadline is not None and loop.time() > deadline:
            log.error("could not publish the outcome in %gs, giving up", patience_s, extra=extra)
            return False
        if connected is not None and not connected():
            if not troubled:
                log.warning("NATS is away: the outcome waits for it", extra=extra)
            troubled = True
            await asyncio.sleep(RECONNECT_POLL_S)
            continue
        try:
            if expect is None:
                view, tail = await bus.load_for_update(js, job_id)
                if view is None or view.status in TERMINAL:
                    status = view.status.value if view else "deleted"
                    log.info("job already ended, dropping our outcome", extra=extra | {"status": status})
                    return False
                expect = tail
            await bus.publish(js, event, expect_last_seq=expect)
            if troubled:
                log.info("outcome published after NATS trouble", extra=extra)
            return True
        except ConcurrencyConflict:
            conflicts += 1
            if conflicts > MAX_CONFLICTS:
                log.error("job keeps changing, giving up on its outcome", extra=extra)
                return False
            expect = None
        except Exception as e:  # NATS away or slow: retry
            if not troubled:
                log.warning("outcome publish failed, retrying: %s", e, extra=extra)
            troubled = True
            # The same expectation again: had the publish landed (its ack lost), the
            # server answers the retry as a duplicate before it compares sequences.
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)

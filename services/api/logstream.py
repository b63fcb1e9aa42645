"""Reading a job's log from BORGFLOW_LOGS (subject `borgflow.logs.<job_id>`).

Each message is a `job.log` envelope carrying a batch of lines. A download reads
what the stream holds with direct gets; a follow adds live lines until the job is finished.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from shared import bus, direct
from shared.events import TERMINAL, JobLog, LogLine, decode
from shared.streams import LOGS

log = logging.getLogger(__name__)

TERMINAL_EVENTS = frozenset(str(s) for s in TERMINAL) | {"deleted"}
# After the job finished, how long to wait for log lines that are known to exist.
DRAIN_TIMEOUT_S = 10.0


def log_subject(job_id: str) -> str:
    return f"borgflow.logs.{job_id}"


def format_time(at: datetime) -> str:
    at = at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def format_line(line: LogLine) -> str:
    """`2026-11-23T16:20:00.123Z INFO  [borg] message`"""
    return f"{format_time(line.at)} {line.level.upper():<5} [{line.source}] {line.message}\n"


def _decoded(data: bytes, subject: str) -> JobLog | None:
    try:
        event = decode(data)
    except msgspec.MsgspecError:
        log.warning("skipping a malformed log message", extra={"subject": subject})
        return None
    return event if isinstance(event, JobLog) else None


async def _stored_logs(js: JetStreamContext, job_id: str) -> AsyncIterator[JobLog]:
    """The job's log messages the stream holds now, oldest first, a batch of direct gets at a time."""
    nc, after = bus.nc_of(js), 0
    while True:
        got = await direct.batch(nc, LOGS, log_subject(job_id), after)
        for stored in got:
            event = _decoded(stored.data, stored.subject)
            if event is not None:
                yield event
        if len(got) < direct.BATCH:
            return
        after = got[-1].seq


async def read_log(js: JetStreamContext, job_id: str) -> AsyncIterator[LogLine]:
    """Every line the job's log holds now, oldest first."""
    async for event in _stored_logs(js, job_id):
        for line in event.data.lines:
            yield line


async def follow_log(js: JetStreamContext, nc: NATS, job_id: str) -> AsyncIterator[LogLine]:
    """Every line from the start, then live ones; ends once the job is finished and its lines are in.

    Live lines come over plain subscriptions (no consumer); what the stream held before is
    read with direct gets, and a message seen both ways is told apart by its envelope id.
    The executor publishes a job's last lines before its outcome, on one connection, so
    once the outcome is here every line before it is here too.
    """
    queue: asyncio.Queue[JobLog | None] = asyncio.Queue()

    async def on_log(msg: Msg) -> None:
        event = _decoded(msg.data, msg.subject)
        if event is not None:
            queue.put_nowait(event)

    async def on_job_event(msg: Msg) -> None:
        if msg.subject.rsplit(".", 1)[-1] in TERMINAL_EVENTS:
            queue.put_nowait(None)

    # Listen before reading, so nothing published in between is missed.
    job_sub = await nc.subscribe(f"borgflow.jobs.{job_id}.*", cb=on_job_event)
    log_sub = await nc.subscribe(log_subject(job_id), cb=on_log)
    try:
        seen: set[str] = set()
        async for event in _stored_logs(js, job_id):
            seen.add(event.id)
            for line in event.data.lines:
                yield line
        view = await bus.load_job(js, job_id)
        if view is None or view.status in TERMINAL:
            queue.put_nowait(None)
        while True:
            item = await queue.get()
            if item is None:
                break
            if item.id not in seen:
                seen.add(item.id)
                for line in item.data.lines:
                    yield line
        while not queue.empty():  # lines that came with the end
            item = queue.get_nowait()
            if item is not None and item.id not in seen:
                seen.add(item.id)
                for line in item.data.lines:
                    yield line
    finally:
        await log_sub.unsubscribe()
        await job_sub.unsubscribe()

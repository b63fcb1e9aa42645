"""Reading a job's log from BORGFLOW_LOGS (subject `borgflow.logs.<job_id>`).

Each message is a `job.log` envelope carrying a batch of lines. A download reads
with an ordered consumer up to the last message present when it started; a follow
keeps reading live lines until the job is finished and its log drained.
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
from nats.js.errors import NotFoundError as NatsNotFound

from shared import bus
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


def lines_of(msg: Msg) -> list[LogLine]:
    try:
        event = decode(msg.data)
    except msgspec.MsgspecError:
        log.warning("skipping a malformed log message", extra={"subject": msg.subject})
        return []
    return list(event.data.lines) if isinstance(event, JobLog) else []


async def last_seq(js: JetStreamContext, job_id: str) -> int:
    """Sequence of the job's last log message, 0 when it has none."""
    try:
        msg = await js.get_last_msg(LOGS, log_subject(job_id))
    except NatsNotFound:
        return 0
    return int(msg.seq or 0)


async def read_log(js: JetStreamContext, job_id: str) -> AsyncIterator[LogLine]:
    """Every line the job's log holds now, oldest first."""
    bound = await last_seq(js, job_id)
    if bound == 0:
        return
    sub = await js.subscribe(log_subject(job_id), stream=LOGS, ordered_consumer=True)
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=DRAIN_TIMEOUT_S)
            except TimeoutError:
                return  # the bound's message went (retention) while we read
            for line in lines_of(msg):
                yield line
            if msg.metadata.sequence.stream >= bound or msg.metadata.num_pending == 0:
                return
    finally:
        await sub.unsubscribe()


async def follow_log(js: JetStreamContext, nc: NATS, job_id: str) -> AsyncIterator[LogLine]:
    """Every line from the start, then live ones; ends once the job is finished and drained."""
    queue: asyncio.Queue[Msg | None] = asyncio.Queue()

    async def on_log(msg: Msg) -> None:
        queue.put_nowait(msg)

    async def on_job_event(msg: Msg) -> None:
        if msg.subject.rsplit(".", 1)[-1] in TERMINAL_EVENTS:
            queue.put_nowait(None)

    # Watch for the end before reading, so a job finishing in between is not missed.
    job_sub = await nc.subscribe(f"borgflow.jobs.{job_id}.*", cb=on_job_event)
    log_sub = await js.subscribe(log_subject(job_id), stream=LOGS, ordered_consumer=True, cb=on_log)
    view = await bus.load_job(js, job_id)
    if view is None or view.status in TERMINAL:
        queue.put_nowait(None)
    seen = 0
    bound: int | None = None
    try:
        while bound is None or seen < bound:
            try:
                item = await asyncio.wait_for(queue.get(), DRAIN_TIMEOUT_S) if bound else await queue.get()
            except TimeoutError:
                return
            if item is None:
                bound = await last_seq(js, job_id)
                continue
            seen = max(seen, item.metadata.sequence.stream)
            for line in lines_of(item):
                yield line
    finally:
        await log_sub.unsubscribe()
        await job_sub.unsubscribe()

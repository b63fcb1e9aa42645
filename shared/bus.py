"""NATS helpers: connect, append events (idempotent, compare-and-set), load a job, consume.

Appends carry `Nats-Msg-Id` = the event id, so a retried publish lands once.
A transition that must happen only from the state a writer saw carries
`Nats-Expected-Last-Subject-Sequence` with the subject filter
`borgflow.jobs.<id>.*`: if anything else was appended to the job since, the
server refuses it (error 10071) and the writer gets ConcurrencyConflict.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import msgspec
import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, PubAck
from nats.js.errors import APIError, NotFoundError

from shared import direct, metrics, tracing
from shared.config import nats_servers
from shared.events import Event, JobEvent, decode_job_event, encode, subject_of
from shared.exceptions import ConcurrencyConflict, InvalidTransition
from shared.jobs import JobView, evolve
from shared.streams import JOBS, job_subject

log = logging.getLogger(__name__)

WRONG_LAST_SEQUENCE = 10071

T = TypeVar("T")


async def connect(url: str, name: str) -> NATS:
    """A connection that keeps reconnecting for as long as the process lives.

    `url` may list the servers of a cluster, comma-separated; the client also learns
    the others from the cluster itself and fails over to any of them.
    """
    reported: set[str] = set()

    async def on_error(e: Exception) -> None:
        # Once per kind of trouble: a server that is down refuses every half second.
        text = f"{type(e).__name__}: {e}"
        if text not in reported:
            reported.add(text)
            log.warning("nats error: %s", text, extra={"client": name})

    async def on_reconnected() -> None:
        reported.clear()
        log.info("nats reconnected", extra={"client": name})

    return await nats.connect(
        servers=nats_servers(url),
        name=name,
        reconnected_cb=on_reconnected,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
        allow_reconnect=True,
        # A pull fetch cut off at shutdown must not hold close() for the 30 s default.
        drain_timeout=5,
        error_cb=on_error,
    )


async def connect_unless_stopped(url: str, name: str, stop: asyncio.Event) -> NATS | None:
    """`connect`, or None when `stop` is set first (NATS unreachable at start, then told to stop)."""
    connecting = asyncio.ensure_future(connect(url, name))
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if connecting.done():
        return connecting.result()
    connecting.cancel()
    with contextlib.suppress(BaseException):
        nc = await connecting
        await nc.close()  # it connected just as it was cancelled
    return None


async def publish(
    js: JetStreamContext,
    event: Event,
    *,
    expect_last_seq: int | None = None,
    msg_id: str | None = None,
    timeout: float = 5.0,
    expect_subject: str | None = None,
) -> PubAck:
    """Append one event. With `expect_last_seq`, only if the job's last event has that sequence
    (or, with `expect_subject`, the last message on that subject; 0: there is none)."""
    headers = {"Nats-Msg-Id": msg_id or event.id}
    tracing.inject(headers)
    if expect_last_seq is not None:
        if event.job_id is None and expect_subject is None:
            raise ValueError("compare-and-set needs a job event")
        headers["Nats-Expected-Last-Subject-Sequence"] = str(expect_last_seq)
        headers["Nats-Expected-Last-Subject-Sequence-Subject"] = expect_subject or job_subject(event.job_id or "")
    try:
        ack = await js.publish(subject_of(event), encode(event), timeout=timeout, headers=headers)
    except APIError as e:
        if e.err_code == WRONG_LAST_SEQUENCE:
            raise ConcurrencyConflict(f"{event.type} for job {event.job_id}: {e.description}") from e
        raise
    if not ack.duplicate:
        metrics.EVENTS.labels(type=event.type).inc()
    return ack


def nc_of(js: JetStreamContext) -> NATS:
    """The connection a JetStream context talks through (direct gets are plain requests)."""
    nc: NATS = js._nc  # nats-py keeps it there and offers no accessor
    return nc


async def last_job_seq(js: JetStreamContext, job_id: str) -> int:
    """Stream sequence of the job's last event, 0 when it has none."""
    stored = await direct.last(nc_of(js), JOBS, job_subject(job_id))
    return 0 if stored is None else stored.seq


async def first_job_event(js: JetStreamContext, job_id: str, event: str) -> tuple[JobEvent, int] | None:
    """The job's first event on `borgflow.jobs.<id>.<event>` (its job.queued, say), with its sequence."""
    got = await direct.batch(nc_of(js), JOBS, job_subject(job_id, event), limit=1)
    if not got:
        return None
    try:
        return decode_job_event(got[0].data), got[0].seq
    except msgspec.MsgspecError:
        return None


async def job_events(js: JetStreamContext, job_id: str) -> list[tuple[JobEvent, int]]:
    """Every event of one job, in order, with its stream sequence."""
    return (await _read_job(js, job_id))[0]


async def _read_job(js: JetStreamContext, job_id: str) -> tuple[list[tuple[JobEvent, int]], int]:
    """The job's events as of now, and the sequence of its last message (0: none).

    Direct gets by the job's subject: no consumer, whatever the backlog of reads.
    """
    out: list[tuple[JobEvent, int]] = []
    tail = 0
    for stored in await direct.every(nc_of(js), JOBS, job_subject(job_id)):
        tail = stored.seq
        try:
            out.append((decode_job_event(stored.data), stored.seq))
        except msgspec.MsgspecError:
            log.warning("skipping a malformed event", extra={"job_id": job_id, "seq": stored.seq})
    return out, tail


async def load_job(js: JetStreamContext, job_id: str) -> JobView | None:
    """The job as its events make it, straight from the stream (the source of truth)."""
    return (await load_for_update(js, job_id))[0]


async def load_for_update(js: JetStreamContext, job_id: str) -> tuple[JobView | None, int]:
    """The job and the compare-and-set token for its next transition.

    The token is the sequence of the job's last message, which is the job's
    `last_seq` unless a bad message was skipped after it.
    """
    events, tail = await _read_job(js, job_id)
    view: JobView | None = None
    for event, seq in events:
        try:
            view = evolve(view, event, seq)
        except InvalidTransition as e:  # skipped exactly as the projector skips it
            log.debug("skipping event: %s", e)
    return view, tail


async def durable_pull(
    js: JetStreamContext,
    *,
    stream: str,
    durable: str,
    filter_subjects: Sequence[str],
    deliver_policy: DeliverPolicy = DeliverPolicy.ALL,
    ack_wait: float = 30.0,
    max_ack_pending: int = 10_000,
) -> JetStreamContext.PullSubscription:
    """A durable pull consumer, created or reattached (its position survives restarts)."""
    many = len(filter_subjects) > 1
    config = ConsumerConfig(
        durable_name=durable,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=deliver_policy,
        ack_wait=ack_wait,
        max_ack_pending=max_ack_pending,
        filter_subjects=list(filter_subjects) if many else None,
    )
    return await js.pull_subscribe(filter_subjects[0], durable=durable, stream=stream, config=config)


async def batches(
    sub: JetStreamContext.PullSubscription, batch: int = 256, wait: float = 1.0, follower: str | None = None
) -> AsyncIterator[list[Msg]]:
    """Yield fetched batches forever; an idle fetch simply loops (cancel the task to stop).

    `follower` names the consumer in the consumer-lag metric.
    """
    while True:
        try:
            msgs = await sub.fetch(batch, timeout=wait)
        except TimeoutError:
            continue
        except nats.errors.ConnectionClosedError:
            raise
        except Exception as e:  # reconnecting, no responders: wait for the connection to return
            log.warning("fetch failed, retrying: %s", e)
            await asyncio.sleep(0.5)
            continue
        if msgs:
            if follower:
                metrics.lag(follower, msgs[-1].metadata.num_pending)
            yield msgs


async def patiently(what: str, call: Callable[[], Awaitable[T]], pause_s: float = 1.0) -> T:
    """`call()` until it succeeds: a NATS cluster electing its leaders answers errors for a while.

    A service starting then (or restarted with it) waits instead of dying; stopping it
    cancels the wait.
    """
    reported = False
    while True:
        try:
            return await call()
        except NotFoundError:
            raise  # an answer, not a server that is not ready
        except (nats.errors.Error, TimeoutError, OSError) as e:
            if not reported:
                log.warning("%s: NATS is not ready (%s), waiting", what, type(e).__name__)
                reported = True
            await asyncio.sleep(pause_s)


def seq_of(msg: Msg) -> int:
    """A consumed message's stream sequence, read straight off its reply subject.

    Same as `msg.metadata.sequence.stream`, without building the metadata (and its
    timestamp) for every message of a batch: `$JS.ACK.<stream>.<consumer>.<delivered>.<seq>...`
    (9 tokens), or with a domain and an account hash after `ACK` (12).
    """
    tokens = (msg.reply or "").split(".", 8)
    if len(tokens) == 9 and tokens[0] == "$JS" and tokens[1] == "ACK":
        return int(tokens[5] if "." not in tokens[8] else tokens[7])
    return int(msg.metadata.sequence.stream)


def json_of(value: Any) -> bytes:
    return msgspec.json.encode(value)

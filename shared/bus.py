"""NATS helpers: connect, append events (idempotent, compare-and-set), load a job, consume.

Appends carry `Nats-Msg-Id` = the event id, so a retried publish lands once.
A transition that must happen only from the state a writer saw carries
`Nats-Expected-Last-Subject-Sequence` with the subject filter
`borgflow.jobs.<id>.*`: if anything else was appended to the job since, the
server refuses it (error 10071) and the writer gets ConcurrencyConflict.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgspec
import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, PubAck
from nats.js.errors import APIError, NotFoundError

from shared.events import Event, JobEvent, decode_job_event, encode, subject_of
from shared.exceptions import ConcurrencyConflict, InvalidTransition
from shared.jobs import JobView, evolve
from shared.streams import JOBS, job_subject

log = logging.getLogger(__name__)

WRONG_LAST_SEQUENCE = 10071


async def connect(url: str, name: str) -> NATS:
    """A connection that keeps reconnecting for as long as the process lives."""

    async def on_error(e: Exception) -> None:
        log.warning("nats error: %s", e, extra={"client": name})

    return await nats.connect(
        url,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
        allow_reconnect=True,
        # A pull fetch cut off at shutdown must not hold close() for the 30 s default.
        drain_timeout=5,
        error_cb=on_error,
    )


async def publish(
    js: JetStreamContext,
    event: Event,
    *,
    expect_last_seq: int | None = None,
    msg_id: str | None = None,
    timeout: float = 5.0,
) -> PubAck:
    """Append one event. With `expect_last_seq`, only if the job's last event has that sequence."""
    headers = {"Nats-Msg-Id": msg_id or event.id}
    if expect_last_seq is not None:
        if event.job_id is None:
            raise ValueError("compare-and-set needs a job event")
        headers["Nats-Expected-Last-Subject-Sequence"] = str(expect_last_seq)
        headers["Nats-Expected-Last-Subject-Sequence-Subject"] = job_subject(event.job_id)
    try:
        return await js.publish(subject_of(event), encode(event), timeout=timeout, headers=headers)
    except APIError as e:
        if e.err_code == WRONG_LAST_SEQUENCE:
            raise ConcurrencyConflict(f"{event.type} for job {event.job_id}: {e.description}") from e
        raise


async def last_job_seq(js: JetStreamContext, job_id: str) -> int:
    """Stream sequence of the job's last event, 0 when it has none."""
    try:
        msg = await js.get_last_msg(JOBS, job_subject(job_id))
    except NotFoundError:
        return 0
    return int(msg.seq or 0)


async def job_events(js: JetStreamContext, job_id: str) -> list[tuple[JobEvent, int]]:
    """Every event of one job, in order, with its stream sequence."""
    return (await _read_job(js, job_id))[0]


async def _read_job(js: JetStreamContext, job_id: str) -> tuple[list[tuple[JobEvent, int]], int]:
    """The job's events up to its last message as of now, and that message's sequence."""
    last = await last_job_seq(js, job_id)
    if last == 0:
        return [], 0
    out: list[tuple[JobEvent, int]] = []
    sub = await js.subscribe(job_subject(job_id), stream=JOBS, ordered_consumer=True)
    try:
        while True:
            msg = await sub.next_msg(timeout=5)
            seq = msg.metadata.sequence.stream
            try:
                out.append((decode_job_event(msg.data), seq))
            except msgspec.MsgspecError:
                log.warning("skipping a malformed event", extra={"job_id": job_id, "seq": seq})
            if seq >= last:
                return out, last
    finally:
        await sub.unsubscribe()


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
    sub: JetStreamContext.PullSubscription, batch: int = 256, wait: float = 1.0
) -> AsyncIterator[list[Msg]]:
    """Yield fetched batches forever; an idle fetch simply loops (cancel the task to stop)."""
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
            yield msgs


def seq_of(msg: Msg) -> int:
    return int(msg.metadata.sequence.stream)


def json_of(value: Any) -> bytes:
    return msgspec.json.encode(value)

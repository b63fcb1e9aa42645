"""Following a stream in order from a position the follower keeps itself.

The projector and the dispatcher must see events strictly in stream order,
across their own crashes and NATS restarts. A durable consumer's redeliveries
can overtake newer messages, so instead each follower stores its position
(in Postgres, or in memory for one rebuilt at start) and follows with an
ack-less ephemeral pull consumer that starts right after it. On any error the
consumer is created again from the last sequence handed out: nothing is
skipped, nothing comes twice, and nothing needs acking.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import TypeVar

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from shared import metrics
from shared.bus import nc_of, seq_of

T = TypeVar("T")

log = logging.getLogger(__name__)

# How long a follower waits without a message before it checks its consumer still exists.
IDLE_CHECK_S = 5.0


JS_API = "$JS.API"  # borgflow never sets a JetStream domain or API prefix


class Credit:
    """The deliveries of one ack-less pull consumer to one inbox, in stream order.

    nats-py's `fetch` awaits a task per message (a uuid4, create_task and wait_for
    each): at a rebuild's rate that was a quarter of the projector's CPU. Here a message
    costs one callback that appends it, and a batch one request. Whichever request a
    message answers, an ack-less consumer delivers each message once and in order, so
    the inbox reads as the stream: requests only grant credit. At most one request is
    outstanding, and the next is made while the caller works on a batch (never with a
    batch or more already waiting), so at most two batches are held.
    """

    def __init__(self, nc: NATS, stream: str, consumer: str, batch: int, wait: float) -> None:
        self.nc = nc
        self.subject = f"{JS_API}.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self.inbox = nc.new_inbox()
        self.request = msgspec.json.encode({"batch": batch, "expires": int(wait * 1e9)})
        self.batch = batch
        self.wait = wait
        self.pending: list[Msg] = []
        self.arrived = asyncio.Event()
        self.owed = 0  # messages the outstanding request may still bring (0: none outstanding)
        self.asked_at = 0.0
        self.gone: str | None = None  # the server said the consumer is no more

    async def on_msg(self, msg: Msg) -> None:
        status = msg.headers.get("Status") if msg.headers else None
        if status is None:
            self.pending.append(msg)
            self.owed = max(self.owed - 1, 0)
        elif status in ("404", "408", "409", "503"):  # the request ended: no messages, expired, refused
            self.owed = 0
            description = (msg.headers or {}).get("Description", "")
            if status == "503":  # nobody serves the consumer's subject: it is gone (or its server is)
                self.gone = "no responders for the consumer"
            elif status == "409" and "deleted" in description.lower():
                self.gone = description
        self.arrived.set()

    async def _ask(self) -> None:
        self.owed = self.batch
        self.asked_at = time.monotonic()
        await self.nc.publish(self.subject, self.request, reply=self.inbox)

    async def next(self) -> list[Msg]:
        """The next messages (up to a batch), or [] when none came within `wait`."""
        if not self.pending:
            if self.owed and time.monotonic() - self.asked_at > self.wait + 1.0:
                self.owed = 0  # neither messages nor an answer: the request was lost with its server
            if not self.owed:
                await self._ask()
            self.arrived.clear()
            # asyncio.timeout, not wait_for: 3.11's wait_for may swallow a cancel that
            # comes as the wait ends, and a follower being stopped would carry on.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.wait + 0.5):
                    await self.arrived.wait()
        if self.gone is not None:
            raise ConsumerGone(self.gone)
        taken = self.pending[: self.batch]
        del self.pending[: self.batch]
        if taken and not self.owed and len(self.pending) < self.batch:
            await self._ask()  # the next batch comes in while the caller works on this one
        return taken


class ConsumerGone(Exception):
    """The server deleted the consumer (or lost it): follow again from the position."""


async def follow(
    js: JetStreamContext,
    stream: str,
    subjects: Sequence[str],
    after_seq: int = 0,
    *,
    batch: int = 500,
    wait: float = 1.0,
    last_per_subject: bool = False,
    follower: str | None = None,
) -> AsyncIterator[list[Msg]]:
    """Yield batches of messages with stream sequence > `after_seq`, in order, forever.

    With `last_per_subject`, the first consumer starts from the last message of
    each subject (a cheap way to read "current state" streams such as heartbeats).
    `follower` names it in the consumer-lag metric.

    On a cluster the ephemeral consumer lives on one server: should that server go,
    requests just go unanswered. So after IDLE_CHECK_S without messages the consumer is
    asked for; if it is gone, it is created again from the position.
    """
    follower = follower or stream
    nc = nc_of(js)
    position = after_seq
    first = True
    while True:
        config = ConsumerConfig(
            ack_policy=AckPolicy.NONE,
            inactive_threshold=60.0,
            filter_subject=subjects[0] if len(subjects) == 1 else None,
            filter_subjects=list(subjects) if len(subjects) > 1 else None,
            mem_storage=True,
        )
        if first and last_per_subject and position == 0:
            config.deliver_policy = DeliverPolicy.LAST_PER_SUBJECT
        elif position > 0:
            config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = position + 1
        else:
            config.deliver_policy = DeliverPolicy.ALL
        try:
            consumer = (await js.add_consumer(stream, config=config)).name
            assert consumer is not None
            credit = Credit(nc, stream, consumer, batch, wait)
            sub = await nc.subscribe(credit.inbox, cb=credit.on_msg)
        except Exception as e:  # NATS down or reconnecting: try again shortly
            log.warning("cannot follow %s yet: %s", stream, e)
            await asyncio.sleep(0.5)
            continue
        first = False
        idle_since = time.monotonic()
        try:
            while True:
                msgs = await credit.next()
                if not msgs:
                    if time.monotonic() - idle_since > IDLE_CHECK_S:
                        await js.consumer_info(stream, consumer)  # raises when the consumer is gone
                        idle_since = time.monotonic()
                    continue
                idle_since = time.monotonic()
                fresh = [m for m in msgs if seq_of(m) > position]
                if fresh:
                    position = seq_of(fresh[-1])
                    metrics.lag(follower, fresh[-1].metadata.num_pending)
                    yield fresh
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the consumer vanished (server restart) or the link broke
            log.warning("following %s broke at %d, resuming: %s", stream, position, e)
            await asyncio.sleep(0.2)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()


def caught_up(msgs: list[Msg]) -> bool:
    """Whether the last message of a batch was the stream's last one (for this filter)."""
    return bool(msgs) and msgs[-1].metadata.num_pending == 0


async def ahead(items: AsyncIterator[T], depth: int = 2) -> AsyncGenerator[T, None]:
    """`items`, fetched up to `depth` ahead of the caller in a task of their own.

    A follower that writes each batch somewhere else (the projector, to Postgres) would
    otherwise wait for NATS and for Postgres in turn; this overlaps the two, in order.
    An error of `items` reaches the caller after the batches before it.
    """
    queue: asyncio.Queue[tuple[bool, T | BaseException | None]] = asyncio.Queue(maxsize=depth)

    async def pump() -> None:
        try:
            async for item in items:
                await queue.put((True, item))
        except Exception as e:
            await queue.put((False, e))
        else:
            await queue.put((False, None))

    task = asyncio.create_task(pump(), name="follow-ahead")
    try:
        while True:
            more, value = await queue.get()
            if not more:
                if isinstance(value, BaseException):
                    raise value
                return
            yield value  # type: ignore[misc]  # `more` says it is a T
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

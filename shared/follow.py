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

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from shared import metrics

T = TypeVar("T")

log = logging.getLogger(__name__)

# How long a follower waits without a message before it checks its consumer still exists.
IDLE_CHECK_S = 5.0


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
    fetches just time out. So after IDLE_CHECK_S without messages the consumer is
    asked for; if it is gone, it is created again from the position.
    """
    follower = follower or stream
    position = after_seq
    first = True
    while True:
        config = ConsumerConfig(
            ack_policy=AckPolicy.NONE,
            inactive_threshold=60.0,
            filter_subjects=list(subjects) if len(subjects) > 1 else None,
        )
        if first and last_per_subject and position == 0:
            config.deliver_policy = DeliverPolicy.LAST_PER_SUBJECT
        elif position > 0:
            config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = position + 1
        else:
            config.deliver_policy = DeliverPolicy.ALL
        try:
            sub = await js.pull_subscribe(subjects[0], stream=stream, config=config)
        except Exception as e:  # NATS down or reconnecting: try again shortly
            log.warning("cannot follow %s yet: %s", stream, e)
            await asyncio.sleep(0.5)
            continue
        first = False
        idle_since = time.monotonic()
        try:
            while True:
                try:
                    msgs = await sub.fetch(batch, timeout=wait)
                except TimeoutError:
                    if time.monotonic() - idle_since > IDLE_CHECK_S:
                        await sub.consumer_info()  # raises when the consumer is gone
                        idle_since = time.monotonic()
                    continue
                idle_since = time.monotonic()
                fresh = [m for m in msgs if m.metadata.sequence.stream > position]
                if fresh:
                    position = fresh[-1].metadata.sequence.stream
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

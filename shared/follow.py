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
from collections.abc import AsyncIterator, Sequence

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

log = logging.getLogger(__name__)


async def follow(
    js: JetStreamContext,
    stream: str,
    subjects: Sequence[str],
    after_seq: int = 0,
    *,
    batch: int = 500,
    wait: float = 1.0,
    last_per_subject: bool = False,
) -> AsyncIterator[list[Msg]]:
    """Yield batches of messages with stream sequence > `after_seq`, in order, forever.

    With `last_per_subject`, the first consumer starts from the last message of
    each subject (a cheap way to read "current state" streams such as heartbeats).
    """
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
        try:
            while True:
                try:
                    msgs = await sub.fetch(batch, timeout=wait)
                except TimeoutError:
                    continue
                fresh = [m for m in msgs if m.metadata.sequence.stream > position]
                if fresh:
                    position = fresh[-1].metadata.sequence.stream
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

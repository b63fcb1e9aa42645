"""`follow`: every message after the position, once and in order, batch after batch,
live ones too, and again after the server lost the consumer; `seq_of` reads the
sequence as nats-py's metadata would."""

from __future__ import annotations

import asyncio
import contextlib
import time

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import StreamConfig

from shared.bus import seq_of
from shared.follow import IDLE_CHECK_S, follow
from tests.support.waiting import eventually

STREAM = "FOLLOWED"


def test_seq_of_reads_both_reply_forms_as_the_metadata_does(nc: NATS) -> None:
    for reply in (
        "$JS.ACK.JOBS.c1.1.4242.17.1764700000000000000.3",
        "$JS.ACK._.ACCHASH.JOBS.c1.1.4242.17.1764700000000000000.3.r4nd0m",
        "$JS.ACK.hub.ACCHASH.JOBS.c1.2.99.5.1764700000000000000.0",
    ):
        msg = Msg(nc, subject="x", reply=reply)
        assert seq_of(msg) == msg.metadata.sequence.stream


async def publish(js: JetStreamContext, first: int, last: int) -> None:
    for i in range(first, last + 1):
        await js.publish(f"f.{i % 3}", str(i).encode())


async def take(js: JetStreamContext, after: int, count: int, batch: int) -> list[tuple[int, int]]:
    """(sequence, payload) of the next `count` messages after `after`, and which batch each came in."""
    seen: list[tuple[int, int]] = []
    batches = follow(js, STREAM, ["f.>"], after, batch=batch, wait=0.3)
    try:
        async with asyncio.timeout(30):
            async for msgs in batches:
                assert len(msgs) <= batch
                seen += [(seq_of(m), int(m.data)) for m in msgs]
                if len(seen) >= count:
                    return seen
    finally:
        with contextlib.suppress(Exception):
            await batches.aclose()  # type: ignore[attr-defined]
    return seen


async def test_it_yields_every_message_after_the_position_once_and_in_order(js: JetStreamContext) -> None:
    await js.add_stream(StreamConfig(name=STREAM, subjects=["f.>"]))
    await publish(js, 1, 1000)
    seen = await take(js, after=250, count=750, batch=64)
    assert [s for s, _ in seen] == list(range(251, 1001))
    assert [p for _, p in seen] == list(range(251, 1001))


async def test_it_follows_messages_published_while_it_waits(js: JetStreamContext) -> None:
    await js.add_stream(StreamConfig(name=STREAM, subjects=["f.>"]))
    await publish(js, 1, 10)
    later = asyncio.create_task(take(js, after=0, count=40, batch=8))

    async def idle() -> bool:  # the follower has had the first ten: its next request waits
        consumers = await js.consumers_info(STREAM)
        return bool(consumers) and consumers[0].delivered.stream_seq == 10

    await eventually(idle, what="the follower idle after the first ten")
    await publish(js, 11, 40)
    assert [s for s, _ in await later] == list(range(1, 41))


async def test_it_follows_again_when_the_server_lost_its_consumer(js: JetStreamContext) -> None:
    await js.add_stream(StreamConfig(name=STREAM, subjects=["f.>"]))
    await publish(js, 1, 20)
    seen: list[int] = []
    began = time.monotonic()
    batches = follow(js, STREAM, ["f.>"], 0, batch=5, wait=0.3)
    async with asyncio.timeout(30):
        async for msgs in batches:
            seen += [seq_of(m) for m in msgs]
            if len(seen) == 10:
                # As a restarted server would: every consumer of the stream gone.
                for name in [c.name for c in await js.consumers_info(STREAM)]:
                    await js.delete_consumer(STREAM, name)
                await publish(js, 21, 30)
            if len(seen) >= 30:
                break
    await batches.aclose()  # type: ignore[attr-defined]
    assert seen == list(range(1, 31))
    # Told so by the server (no responders), not found out by the idle check seconds later.
    assert time.monotonic() - began < IDLE_CHECK_S

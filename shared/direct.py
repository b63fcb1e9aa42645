"""Reading a stream without a consumer: JetStream's direct get (streams have allow_direct).

A consumer per read (an ordered consumer to fold one job, say) is cheap alone and ruinous
under load: a backlog of reads piles up consumers until the server refuses more. A direct
get is a request answered by any replica from its subject index: the last message of a
subject (`last`), or a batch of the messages of a subject from a sequence on (`batch`,
replies streamed to an inbox and closed by an end-of-batch status).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import Base
from nats.js.errors import APIError

# Answers with no data and these statuses end a read: nothing (404), end of batch (204).
NOT_FOUND = "404"
END_OF_BATCH = "204"
TIMEOUT_S = 5.0
BATCH = 256


@dataclass(frozen=True)
class Stored:
    """One message as the stream holds it."""

    subject: str
    seq: int
    data: bytes
    headers: dict[str, str]
    time: datetime | None  # when the server stored it: its clock, not the publisher's


def _stored(msg: Msg) -> Stored | None:
    headers = dict(msg.headers or {})
    status = headers.get("Status")
    if status in (NOT_FOUND, END_OF_BATCH):
        return None
    if status:
        raise APIError.from_msg(msg)
    stamp = headers.get("Nats-Time-Stamp")
    return Stored(
        subject=headers.get("Nats-Subject", ""),
        seq=int(headers.get("Nats-Sequence", 0)),
        data=msg.data,
        headers=headers,
        time=Base._parse_utc_iso(stamp) if stamp else None,
    )


async def last(nc: NATS, stream: str, subject: str, timeout: float = TIMEOUT_S) -> Stored | None:
    """The last message on `subject` (wildcards allowed), None when there is none."""
    body = json.dumps({"last_by_subj": subject}).encode()
    reply = await nc.request(f"$JS.API.DIRECT.GET.{stream}", body, timeout=timeout)
    return _stored(reply)


async def at(nc: NATS, stream: str, seq: int, timeout: float = TIMEOUT_S) -> Stored | None:
    """The message at sequence `seq`, None when there is none (deleted, or past the end)."""
    reply = await nc.request(f"$JS.API.DIRECT.GET.{stream}", json.dumps({"seq": seq}).encode(), timeout=timeout)
    return _stored(reply)


async def batch(
    nc: NATS, stream: str, subject: str, after_seq: int = 0, limit: int = BATCH, timeout: float = TIMEOUT_S
) -> list[Stored]:
    """Up to `limit` messages on `subject` (wildcards allowed) with sequence > `after_seq`, in order.

    With a wildcard, a batch that is not filled costs the server a scan from the last match
    to the stream's end (to be sure there are no more): a cost that grows with what was
    appended since, where `last` and `at` stay flat.
    """
    body = {"seq": after_seq + 1, "next_by_subj": subject, "batch": limit}
    return await _streamed(nc, stream, body, limit, timeout)


async def _streamed(nc: NATS, stream: str, body: dict[str, object], limit: int, timeout: float) -> list[Stored]:
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    try:
        await nc.publish(f"$JS.API.DIRECT.GET.{stream}", json.dumps(body).encode(), reply=inbox)
        out: list[Stored] = []
        while len(out) < limit:
            stored = _stored(await sub.next_msg(timeout=timeout))
            if stored is None:
                break
            out.append(stored)
        return out
    finally:
        await sub.unsubscribe()


async def every(nc: NATS, stream: str, subject: str, after_seq: int = 0) -> list[Stored]:
    """Every message on `subject` after `after_seq` (batch after batch)."""
    out: list[Stored] = []
    while True:
        got = await batch(nc, stream, subject, after_seq)
        out.extend(got)
        if len(got) < BATCH:
            return out
        after_seq = got[-1].seq

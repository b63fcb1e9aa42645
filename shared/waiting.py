"""Why queued jobs wait: asked of the dispatcher, for the jobs someone is looking at.

The dispatcher knows why each job waits from its indices (services/dispatcher/queue.py)
in O(log n). Publishing that for every queued job would cost as much as the queue on
every change; nobody reads most of it. So the api asks, over core NATS request/reply,
for the jobs it is about to answer with (one job, a page, the queue's head), and any
dispatcher answers (they form a queue group; a standby has the same fold of the
stream). No answer within TIMEOUT_S: the jobs are shown without a reason.
"""

from __future__ import annotations

import logging

import msgspec
from nats.aio.client import Client as NATS

from shared.jobs import Waiting

log = logging.getLogger(__name__)

SUBJECT = "borgflow.dispatcher.waiting"
QUEUE_GROUP = "dispatchers"
TIMEOUT_S = 0.25
MAX_IDS = 1000  # per request: a page, the queue's head; never the whole queue


class Ask(msgspec.Struct, frozen=True):
    ids: list[str]


class Answer(msgspec.Struct, frozen=True):
    waiting: dict[str, Waiting]


_ask = msgspec.json.Decoder(Ask)
_answer = msgspec.json.Decoder(Answer)
_encode = msgspec.json.Encoder()


async def ask(nc: NATS, ids: list[str], timeout: float = TIMEOUT_S) -> dict[str, Waiting]:
    """Why each of `ids` waits (those not queued are absent); empty when no dispatcher answers."""
    if not ids:
        return {}
    out: dict[str, Waiting] = {}
    for start in range(0, len(ids), MAX_IDS):
        try:
            reply = await nc.request(SUBJECT, _encode.encode(Ask(ids=ids[start : start + MAX_IDS])), timeout=timeout)
            out.update(_answer.decode(reply.data).waiting)
        except Exception as e:  # no dispatcher (yet), NATS away: no reasons, never an error
            log.debug("no waiting reasons: %s", type(e).__name__)
            return out
    return out


def decode_ask(raw: bytes) -> Ask:
    return _ask.decode(raw)


def encode_answer(waiting: dict[str, Waiting]) -> bytes:
    return _encode.encode(Answer(waiting=waiting))

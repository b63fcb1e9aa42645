"""Why queued jobs wait: the dispatcher's map, kept in memory and merged into job answers.

The dispatcher rewrites the whole map into the KV bucket `borgflow_waiting`, key
`queue`, whenever it changes: `{"waiting": {"<job_id>": {"reason", "detail", "position"}}}`.
The api watches that key for its lifetime (`watch`) and every job-returning path
passes its views through `WaitingBoard.merge`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from shared.jobs import JobView, Waiting
from shared.streams import WAITING_BUCKET

log = logging.getLogger(__name__)

KEY = "queue"
# How soon a watch that could not start (no bucket yet, NATS away) or ended is tried again.
RETRY_S = 1.0


class _Published(msgspec.Struct, kw_only=True):
    waiting: dict[str, Waiting] = {}


_decode = msgspec.json.Decoder(_Published)


class WaitingBoard:
    """The latest map the dispatcher published (empty until one is seen)."""

    def __init__(self) -> None:
        self.reasons: dict[str, Waiting] = {}

    def apply(self, raw: bytes | None) -> None:
        """Take a published value; an empty, deleted or unreadable one means nothing waits."""
        if not raw:
            self.reasons = {}
            return
        try:
            self.reasons = _decode.decode(raw).waiting
        except msgspec.MsgspecError as e:
            log.warning("ignoring an unreadable waiting map: %s", e, extra={"action": "waiting.decode"})
            self.reasons = {}

    def merge(self, view: JobView) -> JobView:
        """The job with why it waits: only a queued job waits; one not in the map shows null."""
        reason = self.reasons.get(view.id) if view.status == "queued" else None
        if reason == view.waiting:
            return view
        return msgspec.structs.replace(view, waiting=reason)

    def merge_all(self, views: list[JobView]) -> list[JobView]:
        return [self.merge(v) for v in views]


def _stop_if_cancelled() -> None:
    """Honour a cancellation a library swallowed.

    nats-py awaits its requests with asyncio.wait_for, which in Python 3.11 returns
    the answer instead of raising when a cancellation and the answer arrive together.
    The task still counts the request (`cancelling()`), so it is honoured here.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def _follow(js: JetStreamContext, board: WaitingBoard) -> None:
    """Apply every value of the key until the watch ends (raises when the bucket is missing)."""
    kv = await js.key_value(WAITING_BUCKET)
    _stop_if_cancelled()
    watcher = await kv.watch(KEY)
    try:
        _stop_if_cancelled()
        log.info("watching waiting reasons", extra={"action": "waiting.watch"})
        async for entry in watcher:
            if entry is None:  # end of the initial values; nothing stored means nothing waits
                continue
            board.apply(None if entry.operation in ("DEL", "PURGE") else entry.value)
    finally:
        with contextlib.suppress(Exception):  # the connection may be gone already
            await watcher.stop()  # type: ignore[no-untyped-call]


async def watch(js: JetStreamContext, board: WaitingBoard, retry_s: float = RETRY_S) -> None:
    """Keep `board` current until cancelled; while the bucket is missing it stays empty."""
    reported: str | None = None
    while True:
        try:
            await _follow(js, board)
            problem = "the watch ended"
        except NotFoundError:  # nats-py raises BucketNotFoundError, a NotFoundError
            board.apply(None)
            problem = f"no bucket {WAITING_BUCKET} yet"
        except Exception as e:  # NATS away: keep the last map, try again
            problem = f"{type(e).__name__} while watching"
        _stop_if_cancelled()  # not an error to retry: a cancellation a library turned into one
        if problem != reported:  # once per kind of trouble, not once per retry
            log.warning("waiting reasons unavailable: %s; retrying", problem, extra={"action": "waiting.watch"})
            reported = problem
        await asyncio.sleep(retry_s)

"""Publishing a running job's progress (throttled) and log lines (batched).

Both run beside the job as their own small tasks, so a slow publish never stalls the
reading of borg's stderr (borg blocks when its pipe fills). Progress and logs are best
effort, the job's outcome is not: while NATS is away nothing is tried (log lines are held,
up to a limit), a failed publish is dropped, and an outage is logged once, not per try.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from nats.js import JetStreamContext

from shared import bus
from shared.events import JobLog, JobProgress, LogData, LogLine, Progress, utcnow

log = logging.getLogger(__name__)

# A batch is cut at this many characters so it stays well below NATS's 1 MB max payload.
MAX_BATCH_CHARS = 256_000
# While NATS is away, a job holds at most this many log lines (the oldest go first).
MAX_HELD_LINES = 10_000


def _always() -> bool:
    return True


class _Outage:
    """Publishing trouble, logged once when it starts and once when it ends."""

    def __init__(self, job_id: str, what: str) -> None:
        self.job_id = job_id
        self.what = what
        self.failing = False
        self.lost = 0

    def failed(self, problem: object, lost: int = 0) -> None:
        self.lost += lost
        if not self.failing:
            log.warning(
                "cannot publish %s now (%s): NATS seems away", self.what, problem, extra={"job_id": self.job_id}
            )
        self.failing = True

    def ok(self) -> None:
        if self.failing:
            log.info("publishing %s again (%d lost meanwhile)", self.what, self.lost, extra={"job_id": self.job_id})
        self.failing = False
        self.lost = 0


class ProgressReporter:
    """At most one JobProgress per interval per job, the latest one, plus a final one on close."""

    def __init__(
        self, js: JetStreamContext, job_id: str, interval_s: float, *, connected: Callable[[], bool] = _always
    ) -> None:
        self._js = js
        self._job_id = job_id
        self._interval_s = interval_s
        self._connected = connected
        self._outage = _Outage(job_id, "progress")
        self._latest: Progress | None = None
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def latest(self) -> Progress | None:
        return self._latest

    def update(self, progress: Progress) -> None:
        self._latest = progress
        self._changed.set()
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=f"progress-{self._job_id}")

    async def _loop(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            if self._latest is not None:
                await self._publish(self._latest)
            # The throttle: whatever arrives meanwhile is coalesced into the next publish.
            await asyncio.sleep(self._interval_s)

    async def close(self, final: Progress | None = None) -> Progress | None:
        """Stop the throttle and publish the final progress (`final`, else the latest)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        last = final or self._latest
        if last is not None:
            await self._publish(last)
        return last

    async def _publish(self, progress: Progress) -> None:
        # Only the latest progress matters: one that cannot go out now is simply dropped.
        if not self._connected():
            self._outage.failed("not connected", 1)
            return
        try:
            await bus.publish(self._js, JobProgress(job_id=self._job_id, data=progress))
        except Exception as e:  # the next one will say more
            self._outage.failed(e, 1)
        else:
            self._outage.ok()


class LogBatcher:
    """Log lines published as JobLog batches: every `flush_s`, or at once when a batch is full."""

    def __init__(
        self,
        js: JetStreamContext,
        job_id: str,
        *,
        flush_s: float,
        max_lines: int,
        max_chars: int,
        connected: Callable[[], bool] = _always,
    ) -> None:
        self._js = js
        self._job_id = job_id
        self._connected = connected
        self._outage = _Outage(job_id, "log lines")
        self._flush_s = flush_s
        self._max_lines = max(1, max_lines)
        self._max_chars = max_chars
        self._lines: list[LogLine] = []
        self._wake = asyncio.Event()
        self._urgent = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def add(self, message: str, *, level: str = "info", source: str = "borg") -> None:
        if len(message) > self._max_chars:
            message = message[: self._max_chars - 1] + "…"
        self._lines.append(LogLine(at=utcnow(), level=level, message=message, source=source))
        self._wake.set()
        if len(self._lines) >= self._max_lines:
            self._urgent.set()
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=f"log-{self._job_id}")

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            if not self._closing and len(self._lines) < self._max_lines:
                # Let the batch fill for up to flush_s; a full batch or close cuts this short.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._urgent.wait(), self._flush_s)
            if not self._closing and not self._connected():
                self._hold()
                await asyncio.sleep(self._flush_s)  # a full batch must not spin while NATS is away
                continue
            await self._publish_batch()
            # No await between the check and the clears: add() cannot slip in between.
            if len(self._lines) < self._max_lines:
                self._urgent.clear()
            if not self._lines:
                self._wake.clear()
                if self._closing:
                    return

    async def close(self) -> None:
        """Publish every line still held, then stop."""
        if self._task is None:
            return
        self._closing = True
        self._wake.set()
        self._urgent.set()
        await self._task

    def _hold(self) -> None:
        """NATS is away: keep the lines for when it is back, up to a limit (the oldest go first)."""
        excess = len(self._lines) - MAX_HELD_LINES
        if excess > 0:
            del self._lines[:excess]
        self._outage.failed("not connected", max(0, excess))

    async def _publish_batch(self) -> None:
        batch: list[LogLine] = []
        size = 0
        for line in self._lines[: self._max_lines]:
            if batch and size + len(line.message) > MAX_BATCH_CHARS:
                break
            batch.append(line)
            size += len(line.message)
        del self._lines[: len(batch)]
        if not self._connected():  # closing while NATS is away: these lines are lost
            self._outage.failed("not connected", len(batch))
            return
        try:
            await bus.publish(self._js, JobLog(job_id=self._job_id, data=LogData(lines=batch)))
        except Exception as e:  # lose these lines rather than the job
            self._outage.failed(e, len(batch))
        else:
            self._outage.ok()

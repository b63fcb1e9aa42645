"""Two processes joined by a pipe the executor holds: `producer | consumer`, never a shell.

The executor copies the producer's stdout into the consumer's stdin itself, so it counts
the bytes as they pass (a restore's progress) and knows which side stopped first. Each
process runs in its own session; a cancel stops both (SIGINT, then SIGTERM, then
SIGKILL, `grace_s` apart). A consumer that exits early (a refused connection) stops the
producer too: nobody would read what it writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Sequence

import msgspec

from services.executor.borgproc import STREAM_LIMIT, Tracker, signal_group, text_lines
from services.executor.jobs.process import ProcessUnavailable
from services.executor.outcomes import exit_code_of

CHUNK = 1 << 20
DRAIN_TIMEOUT_S = 5.0

OnLine = Callable[[str, str], None]
"""Each line a process writes on stderr, with the side it came from ("producer", "consumer")."""
OnBytes = Callable[[int, float], None]
"""The bytes passed so far and the seconds since the start."""


class Side(msgspec.Struct, frozen=True, kw_only=True):
    argv: list[str]
    env: dict[str, str]
    what: str


class PipeExit(msgspec.Struct, frozen=True, kw_only=True):
    producer_code: int
    consumer_code: int
    bytes: int
    elapsed_s: float
    signalled: bool = False
    """A cancel made us stop them."""
    consumer_first: bool = False
    """The consumer stopped reading before the producer was done (its own failure)."""


async def _spawn(side: Side, stdin: int) -> asyncio.subprocess.Process:
    try:
        return await asyncio.create_subprocess_exec(
            *side.argv,
            stdin=stdin,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(side.env),
            start_new_session=True,
            limit=STREAM_LIMIT,
        )
    except OSError as e:
        raise ProcessUnavailable(side.argv[0], e.strerror or str(e)) from e


async def run_pipe(
    producer: Side,
    consumer: Side,
    *,
    on_line: OnLine,
    on_bytes: OnBytes,
    cancel: asyncio.Event,
    grace_s: float,
    tracker: Tracker | None = None,
) -> PipeExit:
    """Run `producer | consumer` to the end of both; ProcessUnavailable when either cannot start."""
    started = time.monotonic()
    cons = await _spawn(consumer, asyncio.subprocess.PIPE)
    try:
        prod = await _spawn(producer, asyncio.subprocess.DEVNULL)
    except ProcessUnavailable:
        signal_group(cons, signal.SIGKILL)
        await cons.wait()
        raise
    if tracker is not None:
        await tracker.spawned(prod.pid, producer.what)
    passed = 0
    consumer_first = False

    async def copy() -> None:
        nonlocal passed, consumer_first
        assert prod.stdout is not None and cons.stdin is not None
        try:
            while chunk := await prod.stdout.read(CHUNK):
                cons.stdin.write(chunk)
                await cons.stdin.drain()
                passed += len(chunk)
                on_bytes(passed, time.monotonic() - started)
            cons.stdin.close()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                await cons.stdin.wait_closed()
        except (BrokenPipeError, ConnectionResetError):
            # The consumer is gone: the producer would block on a pipe nobody reads.
            consumer_first = True
            signal_group(prod, signal.SIGTERM)

    async def lines(stream: asyncio.StreamReader | None, side: str) -> None:
        if stream is None:
            return
        async for text in text_lines(stream):
            on_line(text.rstrip(), side)

    stopper = _Stopper((prod, cons), grace_s)
    tasks = [
        asyncio.create_task(copy()),
        asyncio.create_task(lines(prod.stderr, "producer")),
        asyncio.create_task(lines(cons.stderr, "consumer")),
        asyncio.create_task(lines(cons.stdout, "consumer")),
    ]
    stopping = asyncio.create_task(stopper.after(cancel))
    try:
        await asyncio.gather(prod.wait(), cons.wait())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*tasks), DRAIN_TIMEOUT_S)
    finally:
        stopping.cancel()
        for proc in (prod, cons):
            if proc.returncode is None:  # we are being cancelled ourselves: leave nothing behind
                signal_group(proc, signal.SIGKILL)
                await proc.wait()
        for task in tasks:
            task.cancel()
    return PipeExit(
        producer_code=exit_code_of(prod.returncode or 0),
        consumer_code=exit_code_of(cons.returncode or 0),
        bytes=passed,
        elapsed_s=time.monotonic() - started,
        signalled=stopper.signalled,
        consumer_first=consumer_first,
    )


class _Stopper:
    def __init__(self, procs: Sequence[asyncio.subprocess.Process], grace_s: float) -> None:
        self.procs = procs
        self.grace_s = grace_s
        self.signalled = False

    async def after(self, cancel: asyncio.Event) -> None:
        await cancel.wait()
        self.signalled = True
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            for proc in self.procs:
                if proc.returncode is None:
                    signal_group(proc, sig)
            try:
                await asyncio.wait_for(asyncio.gather(*(p.wait() for p in self.procs)), self.grace_s)
                return
            except TimeoutError:
                continue

"""Progress is throttled to one event per interval plus a final one; log lines go out in
batches, cut by count and published at least every flush interval."""

from __future__ import annotations

import asyncio

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from services.executor.reporting import LogBatcher, ProgressReporter
from shared import ids
from shared.events import JobLog, JobProgress, Progress, decode
from tests.executor.conftest import eventually


async def _tap(nc: NATS, subject: str) -> list[Msg]:
    seen: list[Msg] = []

    async def record(msg: Msg) -> None:
        seen.append(msg)

    await nc.subscribe(subject, cb=record)
    return seen


async def test_progress_is_throttled_and_the_final_one_is_published(nc: NATS, js: JetStreamContext) -> None:
    job_id = ids.new_id()
    seen = await _tap(nc, f"borgflow.progress.{job_id}")
    reporter = ProgressReporter(js, job_id, interval_s=10.0)
    for n in range(100):
        reporter.update(Progress(nfiles=n))
        await asyncio.sleep(0)  # let the reporter run between updates, as borg's lines would
    await eventually(lambda: len(seen) >= 1)
    final = await reporter.close()
    await nc.flush()
    await eventually(lambda: len(seen) >= 2)
    published = [decode(m.data) for m in seen]
    assert all(isinstance(p, JobProgress) for p in published)
    # the first update went out at once, the 98 after it were coalesced, the last is the final one
    assert [p.data.nfiles for p in published if isinstance(p, JobProgress)] == [0, 99]
    assert final == Progress(nfiles=99)


async def test_logs_are_batched_by_count_and_flushed_on_close(nc: NATS, js: JetStreamContext) -> None:
    job_id = ids.new_id()
    seen = await _tap(nc, f"borgflow.logs.{job_id}")
    batcher = LogBatcher(js, job_id, flush_s=10.0, max_lines=200, max_chars=100)
    for n in range(450):
        batcher.add(f"line {n}")
    batcher.add("x" * 500, level="error", source="executor")
    await batcher.close()
    await nc.flush()
    await eventually(lambda: len(seen) == 3)
    batches = [decode(m.data) for m in seen]
    lines = [line for b in batches if isinstance(b, JobLog) for line in b.data.lines]
    assert [len(b.data.lines) for b in batches if isinstance(b, JobLog)] == [200, 200, 51]
    assert [line.message for line in lines[:450]] == [f"line {n}" for n in range(450)]
    assert lines[-1].level == "error" and lines[-1].source == "executor" and len(lines[-1].message) == 100


async def test_logs_go_out_within_the_flush_interval_while_a_job_runs(nc: NATS, js: JetStreamContext) -> None:
    job_id = ids.new_id()
    seen = await _tap(nc, f"borgflow.logs.{job_id}")
    batcher = LogBatcher(js, job_id, flush_s=0.05, max_lines=200, max_chars=1000)
    batcher.add("first")
    await eventually(lambda: len(seen) == 1, timeout=2)
    batcher.add("second")
    await eventually(lambda: len(seen) == 2, timeout=2)
    await batcher.close()

"""How much progress and log traffic one executor publishes for real borg jobs.

    .venv/bin/python -m bench.executor_rates [--files 10000] [--progress-interval 1.0]

Starts a private nats-server (shared.testing.NatsServer), runs the executor in this
process with its production timings, and runs two jobs through it on ~10,000 small files:
a backup, then a restore of that archive (`extract --list` logs one line per item, so it is
the job that exercises the log path). For each it counts, from a plain NATS subscription,
the progress events and log batches/lines/bytes the executor published, against the job's
wall time (sent published → terminal event seen).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from services.executor.app import run as run_executor
from services.executor.config import ExecutorOptions
from shared import bus, ids
from shared.config import Settings, default_borg_bin
from shared.events import (
    TERMINAL,
    JobLog,
    JobQueued,
    JobSent,
    JobSpec,
    PlanRef,
    RepositoryRef,
    SentData,
    decode,
    utcnow,
)
from shared.streams import ensure_streams
from shared.testing import NatsServer

AGENT = "bench"
TERMINAL_TYPES = {f"job.{s.value}" for s in TERMINAL}


class NoSecrets:
    """The bench repository is unencrypted: no passphrase to fetch."""

    async def passphrase(self, job_id: str) -> str | None:
        return None

    async def aclose(self) -> None:
        pass


@dataclass
class Tally:
    progress_events: int = 0
    log_batches: int = 0
    log_lines: int = 0
    log_bytes: int = 0
    """Payload bytes of the log events, as published (JSON envelopes)."""
    log_text_bytes: int = 0
    """Bytes of the log lines' text alone."""


def make_files(root: Path, files: int) -> int:
    """`files` small files (0.5–4 KiB, half random) in directories of 100; their total size."""
    total = 0
    for i in range(files):
        d = root / f"d{i // 100:04d}"
        d.mkdir(parents=True, exist_ok=True)
        size = 512 + (i * 37) % 3584
        data = os.urandom(size // 2) + bytes(size - size // 2)
        (d / f"f{i:06d}.dat").write_bytes(data)
        total += size
    return total


async def run_job(js: JetStreamContext, nc: NATS, spec: JobSpec) -> tuple[float, Tally, str]:
    """Queue and send one job; count what it publishes until its terminal event."""
    tally = Tally()
    ended = asyncio.Event()
    status = ""

    async def on_progress(msg: Msg) -> None:
        tally.progress_events += 1

    async def on_log(msg: Msg) -> None:
        event = decode(msg.data)
        if isinstance(event, JobLog):
            tally.log_batches += 1
            tally.log_lines += len(event.data.lines)
            tally.log_bytes += len(msg.data)
            tally.log_text_bytes += sum(len(line.message.encode()) for line in event.data.lines)

    async def on_job(msg: Msg) -> None:
        nonlocal status
        kind = decode(msg.data).type
        if kind in TERMINAL_TYPES:
            status = kind.removeprefix("job.")
            ended.set()

    subs = [
        await nc.subscribe(f"borgflow.progress.{spec.id}", cb=on_progress),
        await nc.subscribe(f"borgflow.logs.{spec.id}", cb=on_log),
        await nc.subscribe(f"borgflow.jobs.{spec.id}.*", cb=on_job),
    ]
    queued = await bus.publish(js, JobQueued(job_id=spec.id, data=spec))
    t0 = time.perf_counter()
    await bus.publish(js, JobSent(job_id=spec.id, data=SentData(agent=AGENT)), expect_last_seq=queued.seq)
    await asyncio.wait_for(ended.wait(), 600)
    wall = time.perf_counter() - t0
    await nc.flush()
    for sub in subs:
        await sub.unsubscribe()
    return wall, tally, status


def report(name: str, wall: float, tally: Tally, status: str) -> None:
    print(f"\n{name}: {status} in {wall:.2f}s wall")
    print(
        f"  progress events      {tally.progress_events:>10}   {tally.progress_events / wall:8.2f}/s of job wall time"
    )
    print(f"  log batches          {tally.log_batches:>10}   {tally.log_batches / wall:8.2f}/s")
    print(f"  log lines            {tally.log_lines:>10}   {tally.log_lines / wall:8.0f} lines/s")
    print(
        f"  log bytes            {tally.log_bytes:>10}   {tally.log_bytes / wall / 1024:8.1f} KiB/s"
        f"   (line text alone: {tally.log_text_bytes} bytes)"
    )


def prepare(files: int) -> Path:
    """A work dir with `src` (the files) and `repo` (an empty unencrypted repository)."""
    work = Path(tempfile.mkdtemp(prefix="bf-rates-"))
    t0 = time.perf_counter()
    size = make_files(work / "src", files)
    print(f"{files} files, {size / 1e6:.1f} MB, made in {time.perf_counter() - t0:.1f}s under {work}")
    env = dict(os.environ, BORG_BASE_DIR=str(work / "setup"), BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="yes")
    subprocess.run([default_borg_bin(), "init", "--encryption=none", str(work / "repo")], env=env, check=True)
    return work


async def bench(work: Path, progress_interval_s: float) -> None:
    src = work / "src"
    repo_path = work / "repo"
    nats = NatsServer(work / "nats").start()
    stop = asyncio.Event()
    executor: asyncio.Task[None] | None = None
    nc = await bus.connect(nats.url, "bench")
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        settings = Settings(nats_url=nats.url, agent=AGENT, data_dir=str(work / "agent"))
        options = ExecutorOptions(progress_interval_s=progress_interval_s)
        print(
            f"executor options: progress_interval_s={options.progress_interval_s} log_flush_s={options.log_flush_s}"
            f" log_batch_lines={options.log_batch_lines}"
        )
        executor = asyncio.create_task(run_executor(settings, stop, secrets=NoSecrets(), options=options))
        repo = RepositoryRef(id=ids.new_id(), name="bench", location=str(repo_path), agent=AGENT)
        plan = PlanRef(id=ids.new_id(), name="bench", repository_id=repo.id, paths=[str(src)])

        backup = JobSpec(
            id=ids.new_id(),
            type="backup",
            agent=AGENT,
            created_at=utcnow(),
            repository=repo,
            repository_id=repo.id,
            plan=plan,
            plan_id=plan.id,
        )
        wall, tally, status = await run_job(js, nc, backup)
        report("backup (borg create --progress)", wall, tally, status)
        done = await bus.load_job(js, backup.id)
        archive = done.result.archive if done is not None and done.result is not None else None
        if archive is None:
            raise SystemExit(f"the backup wrote no archive: {done.error if done else 'job not found'}")
        restore = JobSpec(
            id=ids.new_id(),
            type="restore",
            agent=AGENT,
            created_at=utcnow(),
            repository=repo,
            repository_id=repo.id,
            archive=archive,
            options={"destination": str(work / "restored")},
        )
        wall, tally, status = await run_job(js, nc, restore)
        report("restore (borg extract --list --progress)", wall, tally, status)
    finally:
        stop.set()
        if executor is not None:
            await executor
        await nc.close()
        nats.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--progress-interval", type=float, default=ExecutorOptions().progress_interval_s)
    args = ap.parse_args()
    print("command:", shlex.join([".venv/bin/python", "-m", "bench.executor_rates", *sys.argv[1:]]))
    asyncio.run(bench(prepare(args.files), args.progress_interval))


if __name__ == "__main__":
    main()

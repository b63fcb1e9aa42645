"""How on time the scheduler fires, and how fast a failure reaches a notification target.

    .venv/bin/python -m bench.scheduler_notifier [--fires 30] [--failures 50]

Starts a private nats-server and an embedded Postgres (shared.testing), runs the
scheduler and the notifier in this process with their production settings and the
real clock, and measures:

- fire accuracy: a schedule firing every second (`* * * * * *`, croniter's seconds
  field) queues a ping job per fire; the delay is from the fire time to the moment
  JetStream stored that job's `job.queued` (the message's server timestamp).
- notification delay: jobs are run to `job.failed` one at a time; the delay is from
  the `job.failed` append (its publish acknowledged) to the moment a local HTTP
  receiver (apprise `json://`) got the message.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from nats.js import JetStreamContext

from services.notifier.app import CONSUMERS, DURABLE
from services.notifier.app import run as run_notifier
from services.scheduler.app import run as run_scheduler
from shared import bus, db, ids
from shared import events as ev
from shared.config import Settings
from shared.streams import ensure_streams
from shared.testing import NatsServer, embedded_postgres


def percentiles(samples_ms: list[float]) -> str:
    s = sorted(samples_ms)
    q = statistics.quantiles(s, n=100, method="inclusive")
    return f"n={len(s)}  p50={q[49]:.1f} ms  p99={q[98]:.1f} ms  max={s[-1]:.1f} ms  min={s[0]:.1f} ms"


class Receiver:
    """apprise json:// posts land here; each arrival time is noted by the job id in the message."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        arrived = self.arrived

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                at = time.time()
                job_id = body["message"].split(":", 1)[0].removeprefix("Job ").strip()
                arrived.setdefault(job_id, at)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.server.server_address[1]}/hook"


async def fire_accuracy(settings: Settings, js: JetStreamContext, fires: int) -> list[float]:
    conn = await db.connect(settings.database_url)
    try:
        await conn.execute(
            "INSERT INTO schedules (id, name, cron, job, catch_up_s) VALUES ($1, 'every second', '* * * * * *', $2, 0)",
            ids.new_id(),
            {"type": "ping", "agent": "bench"},
        )
    finally:
        await conn.close()
    stored: dict[str, float] = {}  # job id -> when JetStream stored its job.queued
    fired: dict[str, float] = {}  # job id -> its fire time
    queued_sub = await js.subscribe("borgflow.jobs.*.queued", stream="BORGFLOW_JOBS", ordered_consumer=True)
    fired_sub = await js.subscribe("borgflow.schedules.*.fired", stream="BORGFLOW_SCHEDULES", ordered_consumer=True)
    stop = asyncio.Event()
    task = asyncio.create_task(run_scheduler(settings, stop))
    try:
        while len(fired) < fires + 2 or len(stored) < fires + 2:
            for sub, into in ((queued_sub, stored), (fired_sub, fired)):
                try:
                    msg = await sub.next_msg(timeout=0.05)
                except TimeoutError:
                    continue
                event = ev.decode(msg.data)
                if isinstance(event, ev.JobQueued):
                    into[event.data.id] = msg.metadata.timestamp.timestamp()
                elif isinstance(event, ev.ScheduleFired) and event.data.job_id:
                    into[event.data.job_id] = event.data.fire_at.timestamp()
    finally:
        stop.set()
        await task
        await queued_sub.unsubscribe()
        await fired_sub.unsubscribe()
    # The first fires can come while the scheduler starts up (connections, lease): left out.
    ordered = sorted(fired, key=lambda j: fired[j])[2:]
    return [(stored[j] - fired[j]) * 1000 for j in ordered[:fires] if j in stored]


async def notification_delay(settings: Settings, js: JetStreamContext, failures: int) -> list[float]:
    receiver = Receiver()
    conn = await db.connect(settings.database_url)
    try:
        await conn.execute(
            "INSERT INTO notifications (id, name, url, events) VALUES ($1, 'bench', $2, $3)",
            ids.new_id(),
            receiver.url,
            ["*.failed"],
        )
    finally:
        await conn.close()
    stop = asyncio.Event()
    task = asyncio.create_task(run_notifier(settings, stop))
    appended: dict[str, float] = {}
    try:
        for _ in range(100):  # its durable consumers take only events appended after they exist
            try:
                for stream, _subjects in CONSUMERS:
                    await js.consumer_info(stream, DURABLE)
                break
            except Exception:
                await asyncio.sleep(0.05)
        error = ev.JobError(kind="connection", message="connection closed by remote host", hint="Check the network.")
        for _ in range(failures):
            spec = ev.JobSpec(id=ids.new_id(), type="backup", agent="bench", created_at=ev.utcnow())
            j = spec.id
            await bus.publish(js, ev.JobQueued(job_id=j, data=spec))
            await bus.publish(js, ev.JobSent(job_id=j, data=ev.SentData(agent="bench")))
            await bus.publish(js, ev.JobStarted(job_id=j, data=ev.StartedData(agent="bench")))
            await bus.publish(js, ev.JobFailed(job_id=j, data=ev.OutcomeData(error=error)))
            appended[j] = time.time()
            # One at a time: the delay of one notification, not of a queue of them.
            deadline = time.monotonic() + 10
            while j not in receiver.arrived and time.monotonic() < deadline:
                await asyncio.sleep(0.001)
    finally:
        stop.set()
        await task
        receiver.server.shutdown()
    return [(receiver.arrived[j] - at) * 1000 for j, at in appended.items() if j in receiver.arrived]


async def main_async(fires: int, failures: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="bf-bench-sn-"))
    nats = NatsServer(root / "nats").start()
    pg = embedded_postgres(root / "pg", cleanup="delete")
    try:
        url = pg.get_uri("borgflow")
        await db.ensure_database(url)
        conn = await db.connect(url)
        try:
            await db.migrate(conn)
        finally:
            await conn.close()
        settings = Settings(nats_url=nats.url, database_url=url, api_url="http://127.0.0.1:8080")
        nc = await bus.connect(nats.url, "bench")
        js = nc.jetstream()
        await ensure_streams(js)
        try:
            print(f"started {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC; one process, private nats-server and Postgres")
            accuracy = await fire_accuracy(settings, js, fires)
            print(f"scheduler fire accuracy, fire time -> job.queued stored ({fires} fires, every second):")
            print(f"    {percentiles(accuracy)}")
            delay = await notification_delay(settings, js, failures)
            print(f"notification delay, job.failed appended -> json:// receiver got it ({failures} failures):")
            print(f"    {percentiles(delay)}")
        finally:
            await nc.close()
    finally:
        nats.stop()
        pg.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fires", type=int, default=30)
    ap.add_argument("--failures", type=int, default=50)
    args = ap.parse_args()
    asyncio.run(main_async(args.fires, args.failures))


if __name__ == "__main__":
    main()

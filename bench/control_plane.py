"""The control plane against DESIGN.md's budget, in one run on this machine.

    .venv/bin/python -m bench.control_plane [--history 1000000] [--json artifacts/bench.json]

Every service runs as its own process (bench/system.py) on a private NATS and Postgres,
limits raised to 64. Measured, in order:

- enqueue -> started with a free slot: 200 pings one after another through the public
  api, from the job's created_at (the api accepting it) to its started_at (the executor);
- lifecycles/s for bursts of 500 and 5,000 pings (POST /api/jobs/batch), from the first
  request to the last job.completed seen on NATS, and the ratio of the two;
- a progress event -> a websocket client of /api/events;
- with 100,000 and then --history historical jobs in BORGFLOW_JOBS (four events each,
  appended directly): the dispatcher's and the executor's cold start (kill -9, start,
  until /healthz answers 200) and the read model (GET /api/queue, a filtered GET
  /api/jobs); at 100,000, a projection rebuild's events/s (`--history 0` skips all this);
- the CPU each process spent per lifecycle in the 5,000 burst: what bounds the rate;
- the RSS of every service at the end.

Speed is measured here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from nats.aio.client import Client as NATS
from websockets.asyncio.client import connect

from bench.system import ADMIN, AGENT, System
from services.dispatcher import snapshot
from services.projector import store
from shared import bus, ids
from shared.events import (
    JobCompleted,
    JobProgress,
    JobQueued,
    JobSent,
    JobSpec,
    JobStarted,
    Progress,
    SentData,
    StartedData,
    encode,
    subject_of,
)
from shared.streams import JOBS, SNAPSHOTS_BUCKET

REPORT = Path(__file__).resolve().parents[1] / "artifacts" / "bench.json"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


PY_SPY = str(Path(sys.executable).parent / "py-spy")


async def enqueue_to_started(system: System, n: int = 200) -> list[float]:
    """Milliseconds from accepted to started, one ping at a time (a free slot each time)."""
    out: list[float] = []
    async with system.client() as api:
        for _ in range(n):
            job = (await api.post("/api/jobs", json={"type": "ping", "agent": AGENT})).json()
            while True:
                got = (await api.get(f"/api/jobs/{job['id']}")).json()
                if got["status"] == "completed":
                    break
                await asyncio.sleep(0.005)
            created = datetime.fromisoformat(got["created_at"])
            started = datetime.fromisoformat(got["started_at"])
            out.append((started - created).total_seconds() * 1000)
    return out


async def burst(system: System, nc: NATS, n: int) -> float:
    """Lifecycles per second for `n` pings submitted at once."""
    done: set[str] = set()
    wanted: set[str] = set()
    changed = asyncio.Event()

    async def on_end(msg: Any) -> None:
        done.add(msg.subject.split(".")[2])  # a job may end before its batch's answer arrives
        changed.set()

    sub = await nc.subscribe("borgflow.jobs.*.completed", cb=on_end)
    began = time.monotonic()
    async with system.client() as api:
        for start in range(0, n, 1000):
            bodies = [{"type": "ping", "agent": AGENT} for _ in range(min(1000, n - start))]
            items = (await api.post("/api/jobs/batch", json={"jobs": bodies})).json()["items"]
            wanted.update(item["id"] for item in items)
    deadline = time.monotonic() + 600
    while not wanted <= done:
        changed.clear()
        await asyncio.wait_for(changed.wait(), max(0.1, deadline - time.monotonic()))
    took = time.monotonic() - began
    await sub.unsubscribe()
    return n / took


async def progress_to_websocket(system: System, nc: NATS, n: int = 200) -> list[float]:
    """Milliseconds from a progress event's publish to a websocket client having it."""
    url = system.api_url.replace("http://", "ws://") + f"/api/events?type=job.progress&token={ADMIN}"
    out: list[float] = []
    js = nc.jetstream()
    async with connect(url) as ws:
        for _ in range(n):
            sent = time.monotonic()
            await bus.publish(js, JobProgress(job_id=ids.new_id(), data=Progress(percent=1.0)))
            await asyncio.wait_for(ws.recv(), 10)
            out.append((time.monotonic() - sent) * 1000)
            await asyncio.sleep(0.01)
    return out


async def add_history(nc: NATS, jobs: int) -> None:
    """`jobs` finished pings appended straight to BORGFLOW_JOBS (queued, sent, started, completed)."""
    js = nc.jetstream()
    before = (await js.stream_info(JOBS)).state.messages
    now = datetime.now(UTC)
    for i in range(jobs):
        job_id = ids.new_id()
        spec = JobSpec(id=job_id, type="ping", agent="history", created_at=now)
        for event in (
            JobQueued(job_id=job_id, data=spec, at=now),
            JobSent(job_id=job_id, data=SentData(agent="history"), at=now),
            JobStarted(job_id=job_id, data=StartedData(agent="history"), at=now),
            JobCompleted(job_id=job_id, at=now),
        ):
            await nc.publish(subject_of(event), encode(event))
        if i % 2000 == 0:
            await nc.flush()
    await nc.flush()
    want = before + 4 * jobs
    while (await js.stream_info(JOBS)).state.messages < want:
        await asyncio.sleep(0.5)


async def projected(system: System, nc: NATS, analyze: bool = False) -> None:
    """Wait until the projector has written every event of BORGFLOW_JOBS.

    With `analyze`, refresh the planner's statistics then, as autovacuum would within a
    minute of a load this size (a bulk load leaves them saying the table is empty).
    """
    last = (await nc.jetstream().stream_info(JOBS)).state.last_seq
    conn = await asyncpg.connect(system.database_url)
    try:
        while (await conn.fetchval("SELECT seq FROM projection_checkpoints WHERE name = 'jobs'") or 0) < last:
            await asyncio.sleep(0.5)
        if analyze:
            await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def read_model(system: System, n: int = 100) -> dict[str, list[float]]:
    """Milliseconds per GET /api/queue and per filtered GET /api/jobs."""
    out: dict[str, list[float]] = {"queue": [], "jobs": []}
    async with system.client() as api:
        for _ in range(n):
            for key, path in (("queue", "/api/queue"), ("jobs", "/api/jobs?status=completed&type=ping&limit=50")):
                began = time.monotonic()
                r = await api.get(path)
                assert r.status_code == 200, r.text
                out[key].append((time.monotonic() - began) * 1000)
    return out


async def rebuild_rate(system: System, nc: NATS, profile: Path | None = None) -> float:
    """Events per second of a projection rebuild: the read model dropped, the stream replayed.

    With `profile`, py-spy records the replaying projector there (collapsed stacks).
    """
    total = (await nc.jetstream().stream_info(JOBS)).state.messages
    system.procs["projector"].kill()
    system.procs["projector"].wait()
    conn = await asyncpg.connect(system.database_url)
    try:
        await store.drop_read_model(conn)
    finally:
        await conn.close()
    began, before = time.monotonic(), system.cpu_seconds()
    system.start_service("projector")
    spy = None
    if profile is not None:
        pid = str(system.procs["projector"].pid)
        spy = await asyncio.create_subprocess_exec(PY_SPY, "record", "-p", pid, "-f", "raw", "-o", str(profile))
    await projected(system, nc)
    took, after = time.monotonic() - began, system.cpu_seconds()
    if spy is not None:
        spy.send_signal(signal.SIGINT)  # py-spy writes its file on an interrupt
        await spy.wait()
    for name in ("projector", "postgres", "nats"):
        print(f"rebuild: {name} {after[name] - before.get(name, 0.0):.1f} s CPU in {took:.1f} s", flush=True)
    return total / took


async def snapshot_saved(nc: NATS, at_least: int, timeout: float = 120.0) -> None:
    """Wait until the dispatcher's snapshot covers `at_least` (it saves at most every 30 s)."""
    deadline = time.monotonic() + timeout
    store = await nc.jetstream().object_store(SNAPSHOTS_BUCKET)
    while time.monotonic() < deadline:
        try:
            buffer = io.BytesIO()
            await store.get(snapshot.NAME, writeinto=buffer)
            if snapshot.decode(buffer.getvalue()).seq >= at_least:
                return
        except Exception:
            pass
        await asyncio.sleep(1)
    raise TimeoutError("no snapshot")


async def main(history: int) -> dict[str, Any]:
    system = System()
    results: dict[str, Any] = {"history": history, "when": datetime.now(UTC).isoformat(timespec="seconds")}
    try:
        await system.start()
        nc = await bus.connect(system.nats.url, "bench")
        async with system.client() as api:
            await api.put("/api/settings", json={"max_concurrent_jobs": 64, "agent_slots": 64})
        print("enqueue -> started ...", flush=True)
        e2s = await enqueue_to_started(system)
        results["enqueue_to_started_ms"] = {"p50": pct(e2s, 50), "p99": pct(e2s, 99)}
        print("bursts ...", flush=True)
        results["lifecycles_per_s"] = {"500": await burst(system, nc, 500)}
        before, client_before = system.cpu_seconds(), _own_cpu()
        results["lifecycles_per_s"]["5000"] = await burst(system, nc, 5000)
        after = system.cpu_seconds()
        # Where a lifecycle's CPU goes (ms per job in the 5,000 burst): what bounds the rate
        # on a machine with few cores.
        results["cpu_ms_per_lifecycle"] = {k: round((after[k] - before.get(k, 0.0)) / 5, 3) for k in after} | {
            "bench client": round((_own_cpu() - client_before) / 5, 3)
        }
        results["lifecycles_per_s"]["ratio"] = results["lifecycles_per_s"]["5000"] / results["lifecycles_per_s"]["500"]
        print("progress -> websocket ...", flush=True)
        p2w = await progress_to_websocket(system, nc)
        results["progress_to_websocket_ms"] = {"p50": pct(p2w, 50), "p99": pct(p2w, 99)}
        have = 0
        for target in sorted({100_000, history}) if history else []:  # --history 0: no history part
            print(f"history to {target} jobs ...", flush=True)
            began = time.monotonic()
            await add_history(nc, target - have)
            have = target
            await projected(system, nc, analyze=True)
            results[f"history_{target}_load_s"] = round(time.monotonic() - began, 1)
            last = (await nc.jetstream().stream_info(JOBS)).state.last_seq
            await snapshot_saved(nc, last)
            results[f"cold_start_s_{target}"] = {
                "dispatcher": await system.restart("dispatcher"),
                "executor": await system.restart("executor"),
            }
            rm = await read_model(system)
            results[f"read_model_ms_{target}"] = {k: {"p50": pct(v, 50), "p99": pct(v, 99)} for k, v in rm.items()}
            if target == 100_000:
                print("rebuild ...", flush=True)
                results["rebuild_events_per_s"] = await rebuild_rate(system, nc)
        results["rss_mib"] = system.rss_mib()
        await nc.close()
    finally:
        system.stop()
    return results


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def table(r: dict[str, Any]) -> str:
    lines = ["| measure | value | budget |", "|---|---|---|"]
    e = r["enqueue_to_started_ms"]
    lines.append(f"| enqueue -> started, free slot (p50 / p99) | {e['p50']:.1f} / {e['p99']:.1f} ms | p99 <= 20 ms |")
    lc = r["lifecycles_per_s"]
    lines.append(f"| lifecycles/s, burst of 500 | {lc['500']:.0f} | |")
    lines.append(f"| lifecycles/s, burst of 5,000 | {lc['5000']:.0f} | >= 1,000 |")
    lines.append(f"| ratio 5,000 / 500 | {lc['ratio']:.2f} | >= 0.8 |")
    p = r["progress_to_websocket_ms"]
    lines.append(f"| progress event -> websocket client (p50 / p99) | {p['p50']:.1f} / {p['p99']:.1f} ms | |")
    for key in sorted(k for k in r if k.startswith("cold_start_s_")):
        n = int(key.rsplit("_", 1)[1])
        c = r[key]
        both = f"{c['dispatcher']:.2f} / {c['executor']:.2f} s"
        lines.append(f"| cold start at {n:,} jobs: dispatcher / executor | {both} | <= 5 s |")
    for key in sorted(k for k in r if k.startswith("read_model_ms_")):
        n = int(key.rsplit("_", 1)[1])
        m = r[key]
        lines.append(
            f"| read model at {n:,} jobs: GET /api/queue / filtered GET /api/jobs (p99) | "
            f"{m['queue']['p99']:.1f} / {m['jobs']['p99']:.1f} ms | <= 50 ms |"
        )
    if "rebuild_events_per_s" in r:
        lines.append(f"| projection rebuild | {r['rebuild_events_per_s']:.0f} events/s | >= 20,000 |")
    if "cpu_ms_per_lifecycle" in r:
        cpu = r["cpu_ms_per_lifecycle"]
        parts = ", ".join(f"{k} {v:.2f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]))
        lines.append(f"| CPU per lifecycle in the 5,000 burst (ms; {sum(cpu.values()):.2f} in all) | {parts} | |")
    rss = ", ".join(f"{k} {v:.0f}" for k, v in sorted(r["rss_mib"].items()))
    lines.append(f"| RSS per service (MiB) | {rss} | |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--history", type=int, default=1_000_000, help="historical jobs to measure at (and 100k)")
    parser.add_argument("--json", type=Path, default=REPORT, help="where to write the figures")
    args = parser.parse_args()
    figures = asyncio.run(main(args.history))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=2))
    print(table(figures))

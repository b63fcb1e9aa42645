"""The pages at issue 14's scale: 1,000 running and 10,000 queued jobs, in a real browser.

    .venv/bin/python -m bench.pages [--running 1000] [--queued 10000] [--rate 1000] [--seconds 10]
                                    [--json artifacts/bench-pages.json]

Starts `borgflow up` on a data dir under /tmp (removed at the end). A fleet of fake agents
(--agents of them, --running / --agents slots each) publishes heartbeats on NATS as
executors do and claims every job the dispatcher sends it (`job.started`, compare-and-set
on the `job.sent`, as services/executor/transitions.py does), so the jobs are really
running in the read model; their heartbeats go on for the whole run. --running +
--queued pings go to those agents through POST /api/jobs/batch: the dispatcher sends
--running (every slot taken) and the rest wait, `agent_busy`.

Then /queue, /dashboard and /agents are opened one after the other in Debian's chromium
(Playwright, a fresh tab each) and measured:

- ready: from navigation until the page shows its counts and first rows (test ids);
- the JS heap used (CDP Performance.getMetrics, after a garbage collection) and the DOM
  nodes and rows the page holds;
- while --rate `job.progress` events a second go to the running jobs for --seconds (one
  a second per running job is what 1,000 executors send): the main thread's busy fraction
  (CDP TaskDuration over wall time), how long a round trip into the page takes (p50 / max:
  what a click would wait), the HTTP requests the page made (those to /api/queue or
  /api/jobs are what "no per-event full refetch" rules out), websocket reconnects, and
  whether the first running job's bar shows the last percent sent.

Prints a table and writes artifacts/bench-pages.json. Needs chromium and playwright
(`make browser`); takes a minute or two. Speed is measured here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import shutil
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from services.executor.transitions import claim
from shared import bus
from shared.events import (
    AgentHeartbeat,
    HeartbeatData,
    JobProgress,
    JobSent,
    Progress,
    StartedData,
    decode_job_event,
    encode,
    subject_of,
)
from shared.version import VERSION
from tests.support.upsystem import UpSystem
from tests.web.conftest import CHROMIUM, CHROMIUM_ARGS

REPORT = Path(__file__).resolve().parents[1] / "artifacts" / "bench-pages.json"
HEARTBEAT_S = 5.0
READY_TIMEOUT_MS = 60_000
# The requests that would be a full re-read of the queue.
QUEUE_READS = ("/api/queue", "/api/jobs")


class Fleet:
    """Fake agents: heartbeats every HEARTBEAT_S and a claim for every job sent to one of them."""

    def __init__(self, js: JetStreamContext, agents: int, slots: int) -> None:
        self.js = js
        self.slots = slots
        self.running: dict[str, set[str]] = {f"bench-{i:02d}": set() for i in range(agents)}
        self.claimed: list[str] = []
        self.lost_claims = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._claims = asyncio.Semaphore(64)
        self._stop = asyncio.Event()

    async def start(self) -> None:
        await self.beat_all()
        self._spawn(self._beat_forever())
        # Every send so far and to come, oldest first; the fleet takes its own.
        await self.js.subscribe(
            "borgflow.jobs.*.sent", cb=self._on_sent, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
        )

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def beat_all(self) -> None:
        for agent, jobs in self.running.items():
            data = HeartbeatData(
                agent=agent,
                host="bench",
                borg_version="1.4.0",
                borgflow_version=VERSION,
                slots=self.slots,
                running=sorted(jobs),  # as an executor lists them
                interval_s=HEARTBEAT_S,
                pid=1,
            )
            await bus.publish(self.js, AgentHeartbeat(data=data))

    async def _beat_forever(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), HEARTBEAT_S)
            if not self._stop.is_set():
                await self.beat_all()

    async def _on_sent(self, msg: Msg) -> None:
        event = decode_job_event(msg.data)
        if isinstance(event, JobSent) and event.job_id and event.data.agent in self.running:
            self._spawn(self._claim(event.job_id, event.data.agent, bus.seq_of(msg)))

    async def _claim(self, job_id: str, agent: str, sent_seq: int) -> None:
        async with self._claims:
            if await claim(self.js, job_id, sent_seq, StartedData(agent=agent, host="bench", pid=1)) is None:
                self.lost_claims += 1
                return
        self.running[agent].add(job_id)
        self.claimed.append(job_id)

    async def stop(self) -> None:
        self._stop.set()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def submit(api: httpx.AsyncClient, agents: list[str], n: int) -> None:
    """`n` pings spread over the agents, 1,000 per POST /api/jobs/batch."""
    for start in range(0, n, 1000):
        bodies = [{"type": "ping", "agent": agents[i % len(agents)]} for i in range(start, min(n, start + 1000))]
        r = await api.post("/api/jobs/batch", json={"jobs": bodies})
        assert r.status_code == 201, r.text[:500]
        refused = [i for i in r.json()["items"] if i.get("error")]
        assert not refused, refused[:3]


async def reached(api: httpx.AsyncClient, running: int, queued: int, timeout: float = 240.0) -> dict[str, Any]:
    """Poll GET /api/queue until the read model holds `running` running and `queued` queued jobs."""
    deadline = time.monotonic() + timeout
    by: dict[str, Any] = {}
    while time.monotonic() < deadline:
        by = (await api.get("/api/queue")).json()["by_status"]
        if by.get("running", 0) >= running and by.get("queued", 0) >= queued:
            return by
        await asyncio.sleep(1)
    raise TimeoutError(f"the read model never reached {running} running / {queued} queued: {by}")


@dataclass
class Progressor:
    """`job.progress` for the running jobs, round robin, each job's percent rising."""

    nc: NATS
    jobs: list[str]
    sent: dict[str, float] = field(default_factory=dict)  # job -> the last percent published

    async def run(self, rate: float, seconds: float) -> int:
        tick, published, k = 0.05, 0, 0
        began = time.monotonic()
        while (elapsed := time.monotonic() - began) < seconds:
            due = int(rate * min(seconds, elapsed + tick))
            while published < due:
                job = self.jobs[k % len(self.jobs)]
                step = k // len(self.jobs) + 1
                percent = round(min(99.0, (self.sent.get(job, 0.0) + 1.0)), 1)
                progress = Progress(
                    percent=percent,
                    action="backing up",
                    nfiles=step * 100,
                    original_size=step * 10_000_000,
                    bytes_per_s=10_000_000.0,
                    current_file=f"/srv/data/file-{step}.bin",
                    eta_s=100.0 - percent,
                )
                event = JobProgress(job_id=job, data=progress)
                await self.nc.publish(subject_of(event), encode(event))
                self.sent[job] = percent
                published += 1
                k += 1
            await self.nc.flush()
            await asyncio.sleep(max(0.0, began + elapsed + tick - time.monotonic()))
        return published


def count_text(n: int, wrap: str = "{}") -> re.Pattern[str]:
    """`n` as the page writes it (toLocaleString: any group separator)."""
    digits = re.escape(f"{n:,}").replace(",", "[,.\u00a0\u202f ]?")
    return re.compile("^" + re.escape(wrap).replace(r"\{\}", digits) + "$")


async def metrics(cdp: Any) -> dict[str, float]:
    got = await cdp.send("Performance.getMetrics")
    return {m["name"]: float(m["value"]) for m in got["metrics"]}


async def heap_mib(cdp: Any) -> float:
    await cdp.send("HeapProfiler.collectGarbage")
    return (await metrics(cdp))["JSHeapUsedSize"] / 2**20


async def round_trips(page: Any, stop: asyncio.Event) -> list[float]:
    """Milliseconds per round trip into the page's main thread, five times a second."""
    out: list[float] = []
    while not stop.is_set():
        began = time.monotonic()
        await page.evaluate("0")
        out.append((time.monotonic() - began) * 1000)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)
    return out


# What each page shows once ready, and what it holds.
ROWS = {
    "/queue": {
        "running rows": '[data-testid="in-progress"] .row',
        "queued rows": '[data-testid="queued"] .row',
        "recent rows": '[data-testid="recent"] .row',
    },
    "/dashboard": {"running rows": '[data-testid="running"] .run-row'},
    "/agents": {"agent cards": ".agent-card"},
}


async def ready(page: Any, path: str, running: int, queued: int, first_agent: str, slots: int) -> None:
    from playwright.async_api import expect

    t = READY_TIMEOUT_MS
    if path == "/queue":
        await expect(page.locator('[data-testid="stat-in-queue"] .value')).to_have_text(count_text(queued), timeout=t)
        await page.locator(ROWS[path]["running rows"]).first.wait_for(timeout=t)
        await page.locator(ROWS[path]["queued rows"]).first.wait_for(timeout=t)
    elif path == "/dashboard":
        await expect(page.locator("#running .count")).to_have_text(count_text(running, "({})"), timeout=t)
    else:
        card = page.get_by_test_id(f"agent-{first_agent}")
        await expect(card.locator('[data-fact="slots"]')).to_have_text(f"{slots} of {slots}", timeout=t)
        await expect(card.locator('[data-fact="queued"]')).to_have_text(re.compile(r"^[1-9]"), timeout=t)


async def measure(
    browser: Any, up: UpSystem, path: str, progressor: Progressor, args: argparse.Namespace, fleet: Fleet
) -> dict[str, Any]:
    from playwright.async_api import expect

    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    cdp = await context.new_cdp_session(page)
    await cdp.send("Performance.enable")
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    requests: list[tuple[float, str]] = []
    page.on("request", lambda r: requests.append((time.monotonic(), urlsplit(r.url).path)))
    sockets: list[float] = []
    page.on("websocket", lambda ws: sockets.append(time.monotonic()))
    out: dict[str, Any] = {"page": path}
    try:
        began = time.monotonic()
        await page.goto(f"{up.base}{path}#token={up.token}")
        try:
            await ready(page, path, args.running, args.queued, next(iter(fleet.running)), fleet.slots)
            out["ready_s"] = round(time.monotonic() - began, 2)
        except AssertionError as e:
            out["ready_s"] = None
            out["not_ready"] = str(e).splitlines()[0][:300]
        await expect(page.locator("#live")).to_have_text("live", timeout=READY_TIMEOUT_MS)
        with contextlib.suppress(Exception):  # a page that keeps reading never idles: measured anyway
            await page.wait_for_load_state("networkidle", timeout=10_000)
        out["heap_mib_loaded"] = round(await heap_mib(cdp), 1)
        out["rows"] = {name: await page.locator(sel).count() for name, sel in ROWS[path].items()}

        # The window: progress events flow, the page is watched.
        first = progressor.jobs[0]
        before, sockets_before, stop = await metrics(cdp), len(sockets), asyncio.Event()
        sampler = asyncio.create_task(round_trips(page, stop))
        t0 = time.monotonic()
        published = await progressor.run(args.rate, args.seconds)
        t1 = time.monotonic()
        stop.set()
        rtt = await sampler
        after = await metrics(cdp)
        wall = t1 - t0
        in_window = Counter(p for t, p in requests if t0 <= t <= t1 and p.startswith("/api/"))
        out["window"] = {
            "seconds": round(wall, 2),
            "events_published": published,
            "busy_fraction": round((after["TaskDuration"] - before["TaskDuration"]) / wall, 3),
            "script_fraction": round((after["ScriptDuration"] - before["ScriptDuration"]) / wall, 3),
            "layout_style_fraction": round(
                (
                    after["LayoutDuration"]
                    - before["LayoutDuration"]
                    + after["RecalcStyleDuration"]
                    - before["RecalcStyleDuration"]
                )
                / wall,
                3,
            ),
            "round_trip_ms": {"p50": round(statistics.median(rtt), 1), "max": round(max(rtt), 1)} if rtt else None,
            "queue_reads": sum(n for p, n in in_window.items() if p.startswith(QUEUE_READS)),
            "api_requests": dict(in_window),
            "websocket_reconnects": len(sockets) - sockets_before,
        }
        # The page kept up: the first running job's bar (where the page has one) says the last percent sent.
        bar = page.get_by_test_id(f"progress-{first}")
        if await bar.count():
            want = progressor.sent[first]
            try:
                await expect(bar).to_have_attribute("aria-valuenow", re.compile(rf"^{want:g}(\.0+)?$"), timeout=10_000)
                out["window"]["bar_current"] = True
            except AssertionError:
                out["window"]["bar_current"] = False
                out["window"]["bar_shows"] = await bar.get_attribute("aria-valuenow")
        out["heap_mib_after"] = round(await heap_mib(cdp), 1)
        out["dom_nodes"] = int((await metrics(cdp))["Nodes"])
        out["page_errors"] = errors[:5]
    finally:
        await context.close()
    return out


async def main(args: argparse.Namespace) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "running": args.running,
        "queued": args.queued,
        "rate": args.rate,
        "seconds": args.seconds,
        "agents": args.agents,
    }
    data = Path(tempfile.mkdtemp(prefix="bf-bench-pages-"))
    up = UpSystem(data, data)
    fleet: Fleet | None = None
    nc: NATS | None = None
    try:
        print(f"borgflow up on {data} ...", flush=True)
        up.start()
        env = dict(line.split("=", 1) for line in (data / "borgflow.env").read_text().splitlines())
        nc = await bus.connect(env["BORGFLOW_NATS_URL"], "bench-pages")
        slots = -(-args.running // args.agents)
        headers = {"Authorization": f"Bearer {up.token}"}
        async with httpx.AsyncClient(base_url=up.base, headers=headers, timeout=120) as api:
            settings = {"max_concurrent_jobs": args.running, "agent_slots": slots}
            assert (await api.put("/api/settings", json=settings)).status_code == 200
            fleet = Fleet(nc.jetstream(), args.agents, slots)
            await fleet.start()
            began = time.monotonic()
            print(f"submitting {args.running + args.queued:,} pings to {args.agents} fake agents ...", flush=True)
            await submit(api, list(fleet.running), args.running + args.queued)
            by_status = await reached(api, args.running, args.queued)
            results["setup_s"] = round(time.monotonic() - began, 1)
            results["by_status"] = by_status
            print(f"read model: {by_status} after {results['setup_s']} s", flush=True)
            await fleet.beat_all()  # their running lists, as executors would say at once
        progressor = Progressor(nc, sorted(fleet.claimed))
        results["pages"] = []
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                for path in ("/queue", "/dashboard", "/agents"):
                    print(f"{path} ...", flush=True)
                    results["pages"].append(await measure(browser, up, path, progressor, args, fleet))
            finally:
                await browser.close()
        results["lost_claims"] = fleet.lost_claims
    finally:
        if fleet is not None:
            await fleet.stop()
        if nc is not None:
            await nc.close()
        up.stop()
        shutil.rmtree(data, ignore_errors=True)
    return results


def table(r: dict[str, Any]) -> str:
    lines = [
        f"{r['running']:,} running, {r['queued']:,} queued; {r['rate']:g} progress events/s for {r['seconds']:g} s",
        "",
        "| page | ready | JS heap loaded / after | DOM nodes | rows | busy (script, layout+style) "
        "| round trip p50 / max | /api/queue + /api/jobs reads (all /api) | ws reconnects | bar current |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in r["pages"]:
        w = p.get("window", {})
        ready = f"{p['ready_s']:.2f} s" if p.get("ready_s") is not None else f"NOT READY ({p.get('not_ready', '')})"
        rows = ", ".join(f"{k} {v:,}" for k, v in p.get("rows", {}).items())
        rt = w.get("round_trip_ms") or {}
        parts = (w.get(k, 0) for k in ("busy_fraction", "script_fraction", "layout_style_fraction"))
        busy = "{:.0%} ({:.0%}, {:.0%})".format(*parts)
        reads = f"{w.get('queue_reads', 0)} ({sum(w.get('api_requests', {}).values())})"
        bar = {True: "yes", False: f"no ({w.get('bar_shows')})"}.get(w.get("bar_current"), "–")
        lines.append(
            f"| {p['page']} | {ready} | {p.get('heap_mib_loaded', 0):.1f} / {p.get('heap_mib_after', 0):.1f} MiB "
            f"| {p.get('dom_nodes', 0):,} | {rows} | {busy} | {rt.get('p50', 0):.0f} / {rt.get('max', 0):.0f} ms "
            f"| {reads} | {w.get('websocket_reconnects', 0)} | {bar} |"
        )
        if p.get("page_errors"):
            lines.append(f"| {p['page']} page errors | {'; '.join(p['page_errors'])} |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--running", type=int, default=1000, help="jobs running on the fake agents")
    parser.add_argument("--queued", type=int, default=10_000, help="jobs waiting for a slot")
    parser.add_argument("--agents", type=int, default=20, help="fake agents sharing the running jobs")
    parser.add_argument("--rate", type=float, default=1000, help="progress events per second in the window")
    parser.add_argument("--seconds", type=float, default=10, help="how long the window lasts")
    parser.add_argument("--json", type=Path, default=REPORT, help="where to write the figures")
    arguments = parser.parse_args()
    figures = asyncio.run(main(arguments))
    arguments.json.parent.mkdir(parents=True, exist_ok=True)
    arguments.json.write_text(json.dumps(figures, indent=2))
    print(table(figures))

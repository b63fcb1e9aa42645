"""Kill -9 one piece in the middle of a run of 50+ jobs with random cancels, restart it, and
check from the event log: every job reached exactly one terminal status, none ran twice, no
limit was exceeded, and the read model equals a replay of the stream."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from shared import bus
from shared.events import JobCompleted
from shared.jobs import JobView
from tests.support.audit import Audit, audit
from tests.support.cluster import Cluster
from tests.support.upsystem import make_source
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow

JOBS = 54
LIMIT = 2
REPORT = Path(__file__).resolve().parents[2] / "artifacts" / "fault-table.jsonl"


@pytest_asyncio.fixture(loop_scope="session")
async def cluster() -> AsyncIterator[Cluster]:
    c = Cluster()
    c.start_servers()
    await c.prepare_database()
    c.start_all()
    yield c
    c.stop_all()


async def ok(client: httpx.AsyncClient, method: str, path: str, body: Any = None) -> Any:
    r = await client.request(method, path, json=body)
    assert r.status_code in (200, 201, 202), f"{method} {path}: {r.status_code} {r.text[:300]}"
    return r.json()


async def finished(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        j: dict[str, Any] = await ok(client, "GET", f"/api/jobs/{job_id}")
        return j if j["status"] in ("completed", "warning", "failed", "cancelled") else None

    return await eventually(check, timeout=60, what=f"job {job_id}")  # type: ignore[no-any-return]


async def set_up(c: Cluster, client: httpx.AsyncClient, tmp_path: Path) -> list[dict[str, Any]]:
    await ok(client, "PUT", "/api/settings", {"max_concurrent_jobs": LIMIT, "sent_timeout_s": 10})
    src = make_source(tmp_path / "src", files=20, size=1024)
    plans = []
    for agent in c.agents:
        repo = await ok(
            client,
            "POST",
            "/api/repositories",
            {
                "name": f"repo-{agent}",
                "location": str(tmp_path / f"repo-{agent}"),
                "agent": agent,
                "passphrase": f"pass-{agent}",
            },
        )
        init = await ok(client, "POST", "/api/jobs", {"type": "init", "repository_id": repo["id"]})
        assert (await finished(client, init["id"]))["status"] == "completed", c.tail(f"executor-{agent}")
        plans.append(
            await ok(
                client,
                "POST",
                "/api/plans",
                {
                    "name": f"plan-{agent}",
                    "repository_id": repo["id"],
                    "paths": [str(src)],
                    "queue_behavior": "queue",
                    "max_queue_depth": 100,
                },
            )
        )
    return plans


async def submit_all(c: Cluster, client: httpx.AsyncClient, plans: list[dict[str, Any]], rng: random.Random) -> None:
    for i in range(JOBS):
        plan = plans[i % len(plans)]
        body = (
            {"type": "backup", "plan_id": plan["id"]}
            if rng.random() < 0.6
            else {"type": "ping", "agent": c.agents[i % len(c.agents)]}
        )
        for _ in range(100):  # the api may be down or failing over: a client retries
            try:
                r = await client.post("/api/jobs", json=body)
                if r.status_code == 201:
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)


async def cancel_some(client: httpx.AsyncClient, rng: random.Random, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await asyncio.sleep(rng.uniform(0.1, 0.6))
        try:
            jobs = (await client.get("/api/jobs?status=queued,sent,running&limit=50")).json()["items"]
            if jobs and rng.random() < 0.5:
                await client.post(f"/api/jobs/{rng.choice(jobs)['id']}/cancel")
        except (httpx.HTTPError, ValueError, KeyError):
            continue  # the api may be down: a person would click again


async def inject_bad_events(c: Cluster, client: httpx.AsyncClient) -> None:
    """Malformed JSON, an unknown type, and a transition from the wrong state, mid-run."""
    victim = (await ok(client, "GET", "/api/jobs?status=queued&limit=1"))["items"]
    nc = await bus.connect(c.nats_url, "vandal")
    try:
        js = nc.jetstream()
        await js.publish("borgflow.jobs.0000000000bad0000000000000.queued", b"{not json")
        await js.publish("borgflow.jobs.0000000000bad0000000000001.failed", b'{"type":"job.exploded","id":"x"}')
        if victim:
            # A completion for a job that never started: every consumer must refuse it.
            await bus.publish(js, JobCompleted(job_id=victim[0]["id"]))
    finally:
        await nc.close()


async def rebuilt_equals_live(c: Cluster, client: httpx.AsyncClient) -> None:
    """Drop the read model and replay the stream: every job answer comes back the same."""
    live = await read_model(client)
    c.kill("projector")
    c.commands_override["projector"] = [*c.commands()["projector"], "--rebuild"]
    c.start("projector")

    async def same_again() -> bool:
        try:
            return await read_model(client) == live
        except AssertionError:
            return False

    await eventually(same_again, timeout=30, what="the rebuilt read model to equal the live one")


def kill(c: Cluster, target: str) -> None:
    if target == "nats":
        c.nats.kill()
    elif target == "postgres":
        c.kill_postgres()
    else:
        c.kill(target)


def restart(c: Cluster, target: str) -> None:
    if target == "nats":
        c.nats.start(log_file=c.logs / "nats.log")
    elif target == "postgres":
        c.start_postgres()
    else:
        c.start(target)


async def settled(c: Cluster) -> Audit:
    nc = await bus.connect(c.nats_url, "audit")
    try:
        js = nc.jetstream()

        async def check() -> Audit | None:
            a = await audit(js)
            return a if len(a.jobs) >= JOBS + len(c.agents) and not a.unfinished() else None

        try:
            return await eventually(check, timeout=150, what="every job finished")  # type: ignore[no-any-return]
        except AssertionError:
            a = await audit(js)
            stuck = {j: str(a.jobs[j].status) for j in a.unfinished()}
            # The executors' tails too: a job stuck running is theirs to explain.
            executors = "".join(f"\n--- executor-{agent}\n{c.tail(f'executor-{agent}', 2000)}" for agent in c.agents)
            raise AssertionError(f"unfinished: {stuck}\n{c.tail('dispatcher')}{executors}") from None
    finally:
        await nc.close()


async def read_model(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    items = (await ok(client, "GET", "/api/jobs?limit=500"))["items"]
    return {j["id"]: j for j in items}


def same(view: JobView, doc: dict[str, Any]) -> bool:
    return doc["status"] == view.status and doc.get("agent") == view.agent


TARGETS = ["dispatcher", "projector", "api", "notifier", "scheduler", "executor-a1", "nats", "postgres"]


@pytest.mark.parametrize("target", TARGETS)
async def test_kill_and_restart(target: str, cluster: Cluster) -> None:
    rng = random.Random(target)
    async with cluster.client() as client:
        plans = await set_up(cluster, client, cluster.root)
        stop_cancels = asyncio.Event()
        canceller = asyncio.create_task(cancel_some(client, rng, stop_cancels))
        submitter = asyncio.create_task(submit_all(cluster, client, plans, rng))
        await asyncio.sleep(0)  # let the run get going before the fault

        async def some_done() -> bool:
            try:
                return len((await client.get("/api/jobs?status=completed&limit=100")).json()["items"]) >= 8
            except (httpx.HTTPError, ValueError, KeyError):
                return False

        try:
            await eventually(some_done, timeout=60, what="the run under way")
        except AssertionError:
            stop_cancels.set()
            raise
        await inject_bad_events(cluster, client)
        kill(cluster, target)
        killed_at = time.monotonic()
        await asyncio.sleep(1.0)  # a service manager's restart delay
        restart(cluster, target)
        await cluster.wait_healthy()
        recovered = time.monotonic() - killed_at
        await submitter
        stop_cancels.set()
        await canceller
        a = await settled(cluster)

        assert all(n == 1 for n in a.terminals.values()), "a job reached more than one terminal status"
        twice = [j for j, n in a.starts.items() if n > 1]
        assert not twice, f"jobs started twice: {twice}"
        assert a.max_active <= LIMIT, f"{a.max_active} jobs at once, limit {LIMIT}"
        assert a.max_per_agent <= 1 and a.max_writers_per_repo <= 1
        assert "unhandled" not in cluster.tail("api", 10**8), "the api answered 500 during the fault"

        async def projected() -> bool:
            docs = await read_model(client)
            return all(j in docs and same(v, docs[j]) for j, v in a.jobs.items())

        await eventually(projected, timeout=30, what="the read model to equal the stream")
        await rebuilt_equals_live(cluster, client)
    REPORT.parent.mkdir(exist_ok=True)
    statuses: dict[str, int] = {}
    for v in a.jobs.values():
        statuses[str(v.status)] = statuses.get(str(v.status), 0) + 1
    with REPORT.open("a") as f:
        f.write(
            json.dumps(
                {
                    "killed": target,
                    "jobs": len(a.jobs),
                    "lost": len(a.unfinished()),
                    "started_twice": len(twice),
                    "max_active": a.max_active,
                    "limit": LIMIT,
                    "recovery_s": round(recovered, 2),
                    "statuses": statuses,
                }
            )
            + "\n"
        )

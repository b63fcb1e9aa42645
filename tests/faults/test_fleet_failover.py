"""The fleet on a real 3-server NATS cluster (replicas 3), every service its own process, two
dispatchers and two schedulers: SIGKILL the leader of BORGFLOW_JOBS, or the active dispatcher,
in the middle of 30 jobs, and check from the event log that no job was lost, none ran twice,
none was queued twice, and the limits held."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import nats.errors
import pytest
import pytest_asyncio

from shared import bus
from shared.streams import BUCKETS, JOBS, LEASES_BUCKET, kv_stream, stream_configs
from tests.support.audit import Audit, audit
from tests.support.cluster import Cluster
from tests.support.upsystem import make_source
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow

JOBS_TO_RUN = 30
LIMIT = 2
AGENTS = ("a1", "a2")
REPORT = Path(__file__).resolve().parents[2] / "artifacts" / "fault-table.jsonl"
SCENARIOS = {
    "nats-leader": "NATS leader of BORGFLOW_JOBS killed (3-server cluster)",
    "dispatcher-active": "one of two dispatchers killed (the active one; 3-server cluster)",
}


@pytest_asyncio.fixture(loop_scope="session")
async def fleet() -> AsyncIterator[Cluster]:
    c = Cluster(AGENTS, nats_servers=3, dispatchers=2, schedulers=2)
    try:
        c.start_servers()
        await c.prepare_database()
        c.start_all()
        yield c
    finally:
        c.stop_all()


async def ok(client: httpx.AsyncClient, method: str, path: str, body: Any = None) -> Any:
    r = await client.request(method, path, json=body)
    assert r.status_code in (200, 201, 202), f"{method} {path}: {r.status_code} {r.text[:300]}"
    return r.json()


async def submit(client: httpx.AsyncClient, body: dict[str, Any], key: str) -> str:
    """POST until accepted, as a client riding out a failover does; the key keeps it one job."""
    for _ in range(300):
        try:
            r = await client.post("/api/jobs", json=body, headers={"Idempotency-Key": key})
            if r.status_code == 201:
                return str(r.json()["id"])
            assert r.status_code in (502, 503, 504), f"{r.status_code} {r.text[:300]}"
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"job {key} was never accepted")


async def set_up(c: Cluster, client: httpx.AsyncClient) -> list[dict[str, Any]]:
    await ok(client, "PUT", "/api/settings", {"max_concurrent_jobs": LIMIT, "sent_timeout_s": 10})
    src = make_source(c.root / "src", files=20, size=1024)
    plans = []
    for agent in AGENTS:
        body = {"name": f"repo-{agent}", "location": str(c.root / f"repo-{agent}"), "agent": agent, "passphrase": "pw"}
        repo = await ok(client, "POST", "/api/repositories", body)
        init = await submit(client, {"type": "init", "repository_id": repo["id"]}, f"init-{agent}")
        await eventually(lambda init=init: finished(client, init), timeout=60, what=f"init on {agent}")
        plan = {"name": f"plan-{agent}", "repository_id": repo["id"], "paths": [str(src)], "queue_behavior": "queue",
                "max_queue_depth": 100}  # fmt: skip
        plans.append(await ok(client, "POST", "/api/plans", plan))
    return plans


async def finished(client: httpx.AsyncClient, job_id: str) -> bool:
    try:
        r = await client.get(f"/api/jobs/{job_id}")
    except httpx.HTTPError:
        return False
    return r.status_code == 200 and r.json()["status"] in ("completed", "warning", "failed", "cancelled")


async def submit_all(client: httpx.AsyncClient, plans: list[dict[str, Any]], rng: random.Random) -> None:
    for i in range(JOBS_TO_RUN):
        agent = AGENTS[i % len(AGENTS)]
        body = {"type": "backup", "plan_id": plans[i % len(plans)]["id"]} if rng.random() < 0.6 else None
        await submit(client, body or {"type": "ping", "agent": agent}, f"job-{i}")
        await asyncio.sleep(rng.uniform(0.0, 0.15))


async def active_dispatcher(c: Cluster) -> str:
    """The process name of the dispatcher that holds the lease."""
    nc = await bus.connect(c.nats_url, "lease-reader")
    try:
        holder = (await (await nc.jetstream().key_value(LEASES_BUCKET)).get("dispatcher")).value or b""
    finally:
        await nc.close()
    pid = int(holder.decode().split(":")[1])
    return next(name for name, proc in c.procs.items() if name.startswith("dispatcher") and proc.pid == pid)


async def settled(c: Cluster) -> Audit:
    nc = await bus.connect(c.nats_url, "audit")
    try:

        async def check() -> Audit | None:
            try:
                a = await audit(nc.jetstream())
            except nats.errors.Error:  # a request timed out while the stream elected a new leader
                return None
            return a if len(a.jobs) >= JOBS_TO_RUN + len(AGENTS) and not a.unfinished() else None

        try:
            return await eventually(check, timeout=180, what="every job finished")  # type: ignore[no-any-return]
        except AssertionError:
            a = await audit(nc.jetstream())
            stuck = {j: str(a.jobs[j].status) for j in a.unfinished()}
            raise AssertionError(f"{len(a.jobs)} jobs, unfinished: {stuck}\n{c.tail('dispatcher')}") from None
    finally:
        await nc.close()


async def replicas_in_place(c: Cluster) -> None:
    """Every stream and bucket has 3 replicas, all current again once the killed piece is back."""
    assert c.nats_cluster is not None
    names = [cfg.name or "" for cfg in stream_configs(settings=_defaults(), replicas=3)]
    names += [kv_stream(b) for b, _, _ in BUCKETS]

    async def current() -> bool:
        for name in names:
            info = await c.nats_cluster.stream(name)  # type: ignore[union-attr]
            replicas = (info.cluster.replicas or []) if info.cluster else []
            if info.config.num_replicas != 3 or len(replicas) != 2 or not all(r.current for r in replicas):
                return False
        return True

    await eventually(current, timeout=60, what="every stream and bucket at 3 current replicas")


def _defaults() -> Any:
    from shared.config import SystemSettings

    return SystemSettings()


@pytest.mark.parametrize("target", list(SCENARIOS))
async def test_a_killed_leader_loses_no_job(target: str, fleet: Cluster) -> None:
    c = fleet
    assert c.nats_cluster is not None
    rng = random.Random(target)
    async with c.client() as client:
        plans = await set_up(c, client)
        submitter = asyncio.create_task(submit_all(client, plans, rng))

        async def some_done() -> bool:
            r = await client.get("/api/jobs?status=completed&limit=100")
            return len(r.json()["items"]) >= 8

        await eventually(some_done, timeout=90, what="the run under way")
        if target == "nats-leader":
            victim = await c.nats_cluster.leader_of(JOBS)
            c.nats_cluster.kill(victim)
        else:
            victim = await active_dispatcher(c)
            c.kill(victim)
        killed_at = time.monotonic()
        killed_wall = datetime.now(UTC)
        await asyncio.sleep(1.0)  # a service manager's restart delay
        if target == "nats-leader":
            c.nats_cluster.start(victim)
        else:
            c.start(victim)
        await submitter
        a = await settled(c)
        # Jobs flow again: the first start after the kill.
        after = sorted(v.started_at for v in a.jobs.values() if v.started_at and v.started_at > killed_wall)
        flowing_s = (after[0] - killed_wall).total_seconds() if after else None
        await c.wait_healthy()
        back_s = time.monotonic() - killed_at
        await replicas_in_place(c)

    assert len(a.jobs) == JOBS_TO_RUN + len(AGENTS), "a job was queued twice (or lost)"
    assert all(n == 1 for n in a.terminals.values()), "a job reached more than one terminal status"
    twice = [j for j, n in a.starts.items() if n > 1]
    assert not twice, f"jobs started twice: {twice}"
    assert a.max_active <= LIMIT, f"{a.max_active} jobs at once, limit {LIMIT}"
    assert a.max_per_agent <= 1 and a.max_writers_per_repo <= 1
    assert "unhandled" not in c.tail("api", 10**8), "the api answered 500 during the failover"

    statuses: dict[str, int] = {}
    for v in a.jobs.values():
        statuses[str(v.status)] = statuses.get(str(v.status), 0) + 1
    REPORT.parent.mkdir(exist_ok=True)
    with REPORT.open("a") as f:
        row = {
            "killed": SCENARIOS[target],
            "jobs": len(a.jobs),
            "lost": len(a.unfinished()),
            "started_twice": len(twice),
            "max_active": a.max_active,
            "limit": LIMIT,
            "recovery_s": round(flowing_s if flowing_s is not None else back_s, 2),
            "statuses": statuses,
        }
        f.write(json.dumps(row) + "\n")

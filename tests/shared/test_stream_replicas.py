"""BORGFLOW_STREAM_REPLICAS on a real 3-server NATS cluster: streams and buckets are made with
that many replicas, and a running system's are raised to it without losing an event."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from nats.aio.client import Client as NATS

from shared import bus, ids
from shared.config import SystemSettings
from shared.events import JobQueued, JobSpec, utcnow
from shared.streams import BUCKETS, JOBS, ensure_streams, kv_stream, stream_configs
from tests.support.natscluster import NatsCluster
from tests.support.waiting import eventually


@pytest_asyncio.fixture(loop_scope="session")
async def cluster(tmp_path: Path) -> AsyncIterator[NatsCluster]:
    c = NatsCluster(tmp_path / "nats").start()
    try:
        await c.ready()
        yield c
    finally:
        c.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def client(cluster: NatsCluster) -> AsyncIterator[NATS]:
    nc = await bus.connect(cluster.url, "replicas-test")
    yield nc
    await nc.close()


ALL = [cfg.name or "" for cfg in stream_configs(SystemSettings())] + [kv_stream(b) for b, _, _ in BUCKETS]


async def replicas(cluster: NatsCluster) -> dict[str, int]:
    return {name: (await cluster.stream(name)).config.num_replicas or 1 for name in ALL}


async def test_replicas_are_made_and_raised_never_lowered(cluster: NatsCluster, client: NATS) -> None:
    js = client.jetstream()
    await bus.patiently("streams", lambda: ensure_streams(js, replicas=1))
    assert set((await replicas(cluster)).values()) == {1}
    job_id = ids.new_id()
    spec = JobSpec(id=job_id, type="ping", agent="a1", created_at=utcnow())
    await bus.publish(js, JobQueued(job_id=job_id, data=spec))

    await ensure_streams(js, replicas=3)  # what a restarted service with BORGFLOW_STREAM_REPLICAS=3 does
    assert set((await replicas(cluster)).values()) == {3}

    async def all_current() -> bool:
        info = await cluster.stream(JOBS)
        peers = info.cluster.replicas if info.cluster else None
        return bool(peers) and len(peers or []) == 2 and all(p.current for p in peers or [])

    await eventually(all_current, timeout=30, what="the new replicas to catch up")
    assert [e.job_id for e, _ in await bus.job_events(js, job_id)] == [job_id]  # nothing lost on the way

    await ensure_streams(js, replicas=1)  # a process configured for fewer does not lower them
    assert set((await replicas(cluster)).values()) == {3}

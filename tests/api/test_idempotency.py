"""POST /api/jobs with an Idempotency-Key: a client's retry never queues a second job."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
from nats.js import JetStreamContext

from services.api import idempotency
from shared import events as ev
from shared.testing import NatsServer
from tests.api.conftest import Client, make_repository
from tests.support.audit import audit, read_jobs_stream
from tests.support.waiting import eventually


async def test_a_retried_post_answers_the_first_job(client: Client, js: JetStreamContext) -> None:
    repo = await make_repository(client)
    body = {"type": "check", "repository_id": repo["id"]}
    first = await client.post("/api/jobs", json=body, headers={"Idempotency-Key": "nightly-check-42"})
    assert first.status_code == 201, first.text
    again = await client.post("/api/jobs", json=body, headers={"Idempotency-Key": "nightly-check-42"})
    assert again.status_code == 201 and again.json()["id"] == first.json()["id"]
    other = await client.post("/api/jobs", json=body, headers={"Idempotency-Key": "nightly-check-43"})
    assert other.json()["id"] != first.json()["id"]
    assert len((await audit(js)).jobs) == 2

    reused = await client.post("/api/jobs", json={"type": "compact", "repository_id": repo["id"]},
                               headers={"Idempotency-Key": "nightly-check-42"})  # fmt: skip
    assert reused.status_code == 422 and reused.json()["field"] == "Idempotency-Key"
    empty = await client.post("/api/jobs", json=body, headers={"Idempotency-Key": "k" * 201})
    assert empty.status_code == 422 and empty.json()["field"] == "Idempotency-Key"


async def test_a_key_whose_append_never_landed_queues_on_retry(
    client: Client, js: JetStreamContext, pool: asyncpg.Pool
) -> None:
    """The first attempt claimed the key and died before its append: the retry queues the job, once."""
    repo = await make_repository(client)
    body = {"type": "check", "repository_id": repo["id"]}
    me = (await client.get("/api/tokens/self")).json()["id"]
    claim = await idempotency.claim(pool, me, "k-1", body)
    r = await client.post("/api/jobs", json=body, headers={"Idempotency-Key": "k-1"})
    assert r.status_code == 201 and r.json()["id"] == claim.job_id
    assert list((await audit(js)).jobs) == [claim.job_id]


@contextmanager
def nats_stopped(server: NatsServer) -> Iterator[None]:
    """NATS frozen (SIGSTOP) for the block: what it is sent waits in its socket, unanswered."""
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)


async def queued_ids(js: JetStreamContext) -> list[str]:
    """The job id of every job.queued in the stream, duplicates included."""
    return [e.job_id or "" for e, _ in await read_jobs_stream(js) if isinstance(e, ev.JobQueued)]


async def test_a_post_whose_append_nats_did_not_confirm_answers_its_job_and_its_retry_queues_it_once(
    client: Client, js: JetStreamContext, nats_server: NatsServer
) -> None:
    repo = await make_repository(client)
    body = {"type": "check", "repository_id": repo["id"]}
    key = {"Idempotency-Key": "check-while-nats-stalls"}
    with nats_stopped(nats_server):  # the append is sent; its confirmation never comes in time
        first = await client.post("/api/jobs", json=body, headers=key, timeout=30)
    assert first.status_code == 202, first.text
    job = first.json()
    assert job["status"] == "queued" and job["message"].startswith("being queued: NATS did not confirm")
    assert "Idempotency-Key again" in job["message"]

    again = await client.post("/api/jobs", json=body, headers=key)
    assert again.status_code == 201, again.text
    assert again.json()["id"] == job["id"]
    assert await queued_ids(js) == [job["id"]]


async def test_without_a_key_the_answer_still_names_the_job_which_is_queued_once_nats_catches_up(
    client: Client, js: JetStreamContext, nats_server: NatsServer
) -> None:
    repo = await make_repository(client)
    with nats_stopped(nats_server):
        r = await client.post("/api/jobs", json={"type": "check", "repository_id": repo["id"]}, timeout=30)
    assert r.status_code == 202, r.text
    job = r.json()
    assert f"GET /api/jobs/{job['id']}" in job["message"] and "Idempotency-Key" in job["message"]

    async def shown() -> bool:
        return (await client.get(f"/api/jobs/{job['id']}")).status_code == 200

    await eventually(shown, what="the job queued once NATS answers")
    assert await queued_ids(js) == [job["id"]]

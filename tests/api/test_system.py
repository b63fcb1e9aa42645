"""Settings reach the KV bucket; health waits for the projection; the queue and agents views."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec
from litestar.testing import AsyncTestClient
from nats.js import JetStreamContext

from services.api.app import create_app
from shared import bus, readmodel
from shared.config import Settings, SystemSettings
from shared.events import (
    JobCompleted,
    JobQueued,
    JobSent,
    JobSpec,
    JobStarted,
    SentData,
    StartedData,
)
from shared.streams import SETTINGS_BUCKET
from tests.api.conftest import Client, advance, make_repository


async def test_settings_defaults_then_partial_put_reaches_kv_and_streams(
    client: Client, js: JetStreamContext, pool: asyncpg.Pool
) -> None:
    kv = await js.key_value(SETTINGS_BUCKET)
    defaults = msgspec.to_builtins(SystemSettings())
    assert (await client.get("/api/settings")).json() == defaults
    # Start-up filled the fresh KV with the (default) settings.
    assert msgspec.json.decode((await kv.get("system")).value or b"") == defaults

    r = await client.put("/api/settings", json={"max_concurrent_jobs": 2, "log_retention_days": 7})
    assert r.status_code == 200, r.text
    assert r.json() == defaults | {"max_concurrent_jobs": 2, "log_retention_days": 7}
    stored = msgspec.json.decode((await kv.get("system")).value or b"", type=SystemSettings)
    assert stored.max_concurrent_jobs == 2 and stored.log_retention_days == 7
    assert (await js.stream_info("BORGFLOW_LOGS")).config.max_age == 7 * 86_400
    assert (await pool.fetchval("SELECT value FROM settings WHERE key = 'system'"))["max_concurrent_jobs"] == 2
    assert (await client.get("/api/settings")).json()["max_concurrent_jobs"] == 2


async def test_bad_settings_name_the_field_and_change_nothing(client: Client, js: JetStreamContext) -> None:
    # A body of the wrong shape (an unknown field, a wrong type) is 400, a value that breaks a rule 422.
    for body, field, status in [
        ({"max_concurrent_jobz": 3}, "max_concurrent_jobz", 400),
        ({"max_concurrent_jobs": 0}, "max_concurrent_jobs", 422),
        ({"agent_slots": "two"}, "agent_slots", 400),
        ({"max_concurrent_manual_backups": 0}, "max_concurrent_manual_backups", 422),
        ({"log_retention_days": -1}, "log_retention_days", 422),
    ]:
        r = await client.put("/api/settings", json=body)
        assert r.status_code == status, (body, r.text)
        assert r.json()["field"] == field
    ok = await client.put("/api/settings", json={"max_concurrent_manual_backups": None})
    assert ok.status_code == 200
    assert (await client.get("/api/settings")).json() == msgspec.to_builtins(SystemSettings())


async def test_health_waits_for_the_jobs_projection(
    settings: Settings, js: JetStreamContext, pool: asyncpg.Pool
) -> None:
    spec = JobSpec(id="j-before-start", type="ping", agent="a1", created_at=datetime.now(UTC))
    ack = await bus.publish(js, JobQueued(job_id=spec.id, data=spec))
    async with AsyncTestClient(create_app(settings)) as c:
        r = await c.get("/api/health")
        assert r.status_code == 503
        assert r.json()["status"] == "starting" and "projection" in r.json()["detail"]
        async with pool.acquire() as conn:
            await readmodel.set_checkpoint(conn, "jobs", ack.seq)
        r = await c.get("/api/health")
        assert r.status_code == 200 and r.json()["status"] == "ok"


async def test_queue_summary(client: Client, js: JetStreamContext, pool: asyncpg.Pool) -> None:
    repo = await make_repository(client)
    ids = [
        (await client.post("/api/jobs", json={"type": "check", "repository_id": repo["id"]})).json()["id"]
        for _ in range(4)
    ]
    done, running, sent, _queued = ids
    now = datetime.now(UTC)
    await advance(
        js,
        pool,
        done,
        JobSent(job_id=done, data=SentData(agent="local")),
        JobStarted(job_id=done, data=StartedData(agent="local"), at=now - timedelta(seconds=10)),
        JobCompleted(job_id=done, at=now),
    )
    await advance(
        js,
        pool,
        running,
        JobSent(job_id=running, data=SentData(agent="local")),
        JobStarted(job_id=running, data=StartedData(agent="local")),
    )
    await advance(js, pool, sent, JobSent(job_id=sent, data=SentData(agent="local")))
    q = (await client.get("/api/queue")).json()
    assert q["in_queue"] == 2 and q["completed_24h"] == 1 and q["completed_prev_24h"] == 0
    assert q["failed_24h"] == 0 and q["avg_duration_s_last_50"] == 10.0
    assert [j["id"] for j in q["in_progress"]] == [running]
    assert [j["id"] for j in q["recent"]] == [done]
    assert [j["id"] for j in q["queued"]] == [sent, _queued]


async def test_agents(client: Client, pool: asyncpg.Pool, js: JetStreamContext) -> None:
    await pool.execute(
        "INSERT INTO agents (name, host, last_seen, borg_version, slots, interval_s) VALUES"
        " ('local', 'box', now(), '1.4.1', 2, 5), ('gone', 'old', now() - interval '1 hour', NULL, 1, 5)"
    )
    repo = await make_repository(client)
    jid = (await client.post("/api/jobs", json={"type": "check", "repository_id": repo["id"]})).json()["id"]
    await advance(js, pool, jid, JobSent(job_id=jid, data=SentData(agent="local")))
    items = (await client.get("/api/agents")).json()["items"]
    by_name = {a["name"]: a for a in items}
    assert by_name["local"]["online"] is True and by_name["local"]["running"] == [jid]
    assert by_name["local"]["slots"] == 2 and by_name["local"]["borg_version"] == "1.4.1"
    assert by_name["gone"]["online"] is False and by_name["gone"]["running"] == []

"""Live pushes: event envelopes as they happen, and a job's log followed to its end."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest
from litestar.exceptions import WebSocketDisconnect
from nats.js import JetStreamContext

from shared import bus
from shared.events import (
    JobCompleted,
    JobLog,
    JobProgress,
    JobSent,
    JobStarted,
    LogData,
    LogLine,
    Progress,
    SentData,
    StartedData,
)
from tests.api.conftest import ADMIN_TOKEN, Client, advance, make_repository

T0 = datetime(2026, 11, 23, 16, 20, 0, 123_000, tzinfo=UTC)
TIMEOUT = 5.0


async def test_sockets_need_a_token_and_a_known_job(client: Client, agent_token: str) -> None:
    for path, headers, code in [
        ("/api/events", {"Authorization": ""}, 4401),
        ("/api/events?token=wrong", {"Authorization": ""}, 4401),
        (f"/api/events?token={agent_token}", {"Authorization": ""}, 4403),
        ("/api/jobs/nope/log/follow", {}, 4404),
    ]:
        async with client.websocket(path, headers) as ws:
            assert await ws.closed_with() == code, path


async def test_events_are_forwarded_filtered_by_job_and_type(client: Client, js: JetStreamContext) -> None:
    repo = await make_repository(client)
    mine = (await client.post("/api/jobs", json={"type": "check", "repository_id": repo["id"]})).json()["id"]
    other = (await client.post("/api/jobs", json={"type": "check", "repository_id": repo["id"]})).json()["id"]

    ws = client.websocket(f"/api/events?token={ADMIN_TOKEN}&job_id={mine}&type=job.", {"Authorization": ""})
    async with ws:
        await bus.publish(js, JobSent(job_id=other, data=SentData(agent="local")))
        await bus.publish(js, JobSent(job_id=mine, data=SentData(agent="local")))
        await bus.publish(js, JobProgress(job_id=mine, data=Progress(percent=42.0, action="scanning")))
        first = await ws.receive_json(timeout=TIMEOUT)
        assert first["type"] == "job.sent" and first["job_id"] == mine
        assert set(first) == {"id", "type", "version", "job_id", "at", "data"}
        second = await ws.receive_json(timeout=TIMEOUT)
        assert second["type"] == "job.progress" and second["data"]["percent"] == 42.0

    everything = client.websocket("/api/events?type=job.progress")
    async with everything:
        await bus.publish(js, JobSent(job_id=other, data=SentData(agent="local")))
        await bus.publish(js, JobProgress(job_id=other, data=Progress(percent=1.0)))
        got = await everything.receive_json(timeout=TIMEOUT)
        assert got["type"] == "job.progress" and got["job_id"] == other


async def test_log_follow_sends_old_then_live_lines_and_closes_when_done(
    client: Client, js: JetStreamContext, pool: asyncpg.Pool
) -> None:
    repo = await make_repository(client)
    jid = (await client.post("/api/jobs", json={"type": "check", "repository_id": repo["id"]})).json()["id"]
    await advance(
        js,
        pool,
        jid,
        JobSent(job_id=jid, data=SentData(agent="local")),
        JobStarted(job_id=jid, data=StartedData(agent="local")),
    )
    await bus.publish(js, JobLog(job_id=jid, data=LogData(lines=[LogLine(at=T0, message="one")])))

    ws = client.websocket(f"/api/jobs/{jid}/log/follow")
    async with ws:
        assert await ws.receive_json(timeout=TIMEOUT) == {
            "at": "2026-11-23T16:20:00.123Z",
            "level": "info",
            "message": "one",
            "source": "borg",
        }
        await bus.publish(js, JobLog(job_id=jid, data=LogData(lines=[LogLine(at=T0, message="two", level="error")])))
        assert (await ws.receive_json(timeout=TIMEOUT))["message"] == "two"
        await bus.publish(js, JobLog(job_id=jid, data=LogData(lines=[LogLine(at=T0, message="three")])))
        await bus.publish(js, JobCompleted(job_id=jid))
        assert (await ws.receive_json(timeout=TIMEOUT))["message"] == "three"
        with pytest.raises(WebSocketDisconnect) as closed:
            await ws.receive_json(timeout=TIMEOUT)
        assert closed.value.code == 1000


async def test_log_follow_of_a_finished_job_sends_its_log_and_closes(client: Client, js: JetStreamContext) -> None:
    repo = await make_repository(client)
    jid = (await client.post("/api/jobs", json={"type": "check", "repository_id": repo["id"]})).json()["id"]
    await client.post(f"/api/jobs/{jid}/cancel")
    await bus.publish(js, JobLog(job_id=jid, data=LogData(lines=[LogLine(at=T0, message="bye")])))
    ws = client.websocket(f"/api/jobs/{jid}/log/follow")
    async with ws:
        assert (await ws.receive_json(timeout=TIMEOUT))["message"] == "bye"
        with pytest.raises(WebSocketDisconnect):
            await ws.receive_json(timeout=TIMEOUT)

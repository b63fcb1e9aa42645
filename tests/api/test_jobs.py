"""Jobs through the api: submitted onto the stream, gated by plans, cancelled, retried, deleted."""

from __future__ import annotations

import asyncpg
import msgspec
import pytest
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from shared import bus
from shared.events import (
    JobCompleted,
    JobError,
    JobFailed,
    JobLog,
    JobQueued,
    JobResult,
    JobSent,
    JobStarted,
    LogData,
    LogLine,
    OutcomeData,
    SentData,
    StartedData,
    decode_job_event,
    utcnow,
)
from shared.submit import QUEUED_BEHIND_MESSAGE
from tests.api.conftest import Client, advance, jobs_stream_count, make_plan, make_repository


async def test_submitted_job_is_queued_on_the_stream_and_readable_at_once(client: Client, js: JetStreamContext) -> None:
    repo = await make_repository(client)
    plan = await make_plan(client, repo["id"])
    r = await client.post("/api/jobs", json={"type": "backup", "plan_id": plan["id"]})
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["status"] == "queued" and job["type"] == "backup"
    assert job["plan_id"] == plan["id"] and job["repository_id"] == repo["id"]
    assert job["agent"] == "local" and job["requested_by"] == "admin" and job["trigger"] == "manual"
    assert job["created_at"].endswith("Z") and job["message"] is None

    msg = await js.get_last_msg("BORGFLOW_JOBS", f"borgflow.jobs.{job['id']}.queued")
    event = decode_job_event(msg.data or b"")
    assert event.type == "job.queued" and event.job_id == job["id"]
    assert msg.headers is not None and msg.headers["Nats-Msg-Id"] == event.id
    assert b"correct horse" not in (msg.data or b"")  # the passphrase never goes into an event

    got = await client.get(f"/api/jobs/{job['id']}")
    assert got.status_code == 200 and got.json()["status"] == "queued"


async def test_plan_queue_behaviour(client: Client, js: JetStreamContext, pool: asyncpg.Pool) -> None:
    repo = await make_repository(client)
    cancel_plan = await make_plan(client, repo["id"], name="cancel")
    queue_plan = await make_plan(client, repo["id"], name="queue", queue_behavior="queue", max_queue_depth=1)

    assert (await client.post("/api/jobs", json={"type": "backup", "plan_id": cancel_plan["id"]})).status_code == 201
    before = await jobs_stream_count(js)
    r = await client.post("/api/jobs", json={"type": "backup", "plan_id": cancel_plan["id"]})
    assert r.status_code == 409 and "queue_behavior" in r.json()["detail"]
    assert await jobs_stream_count(js) == before  # a refused job leaves nothing behind

    first = await client.post("/api/jobs", json={"type": "backup", "plan_id": queue_plan["id"]})
    jid = first.json()["id"]
    await advance(
        js,
        pool,
        jid,
        JobSent(job_id=jid, data=SentData(agent="local")),
        JobStarted(job_id=jid, data=StartedData(agent="local")),
    )
    second = await client.post("/api/jobs", json={"type": "backup", "plan_id": queue_plan["id"]})
    assert first.status_code == 201 and first.json()["message"] is None
    assert second.status_code == 201 and second.json()["message"] == QUEUED_BEHIND_MESSAGE
    before = await jobs_stream_count(js)
    full = await client.post("/api/jobs", json={"type": "backup", "plan_id": queue_plan["id"]})
    assert full.status_code == 409 and "queue full" in full.json()["detail"]
    assert await jobs_stream_count(js) == before


async def test_a_backup_that_ended_on_the_stream_does_not_refuse_the_next_before_the_projector_caught_up(
    client: Client, js: JetStreamContext, pool: asyncpg.Pool
) -> None:
    repo = await make_repository(client)
    plan = await make_plan(client, repo["id"], name="lagging")
    first = (await client.post("/api/jobs", json={"type": "backup", "plan_id": plan["id"]})).json()["id"]
    running = await advance(js, pool, first, JobSent(job_id=first, data=SentData(agent="local")))
    refused = await client.post("/api/jobs", json={"type": "backup", "plan_id": plan["id"]})
    assert refused.status_code == 409 and running.status == "sent"  # a live one still refuses
    # It completes on the stream; its row still says sent (no projector runs here).
    await bus.publish(js, JobStarted(job_id=first, data=StartedData(agent="local")))
    await bus.publish(js, JobCompleted(job_id=first, data=OutcomeData()))
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT status FROM jobs WHERE id = $1", first) == "sent"
    second = await client.post("/api/jobs", json={"type": "backup", "plan_id": plan["id"]})
    assert second.status_code == 201, second.text


async def test_cancel_a_queued_job(client: Client, js: JetStreamContext) -> None:
    repo = await make_repository(client)
    job = (await client.post("/api/jobs", json={"type": "check", "repository_id": repo["id"]})).json()
    r = await client.post(f"/api/jobs/{job['id']}/cancel")
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "cancelled"
    assert r.json()["error"]["kind"] == "cancelled_by_user" and "admin" in r.json()["error"]["message"]
    assert (await client.get(f"/api/jobs/{job['id']}")).json()["status"] == "cancelled"
    view = await bus.load_job(js, job["id"])
    assert view is not None and view.status == "cancelled"
    again = await client.post(f"/api/jobs/{job['id']}/cancel")
    assert again.status_code == 409 and again.json()["detail"] == "job already cancelled"


async def test_cancel_a_running_job_asks_the_executor(client: Client, js: JetStreamContext, pool: asyncpg.Pool) -> None:
    repo = await make_repository(client)
    job = (await client.post("/api/jobs", json={"type": "check", "repository_id": repo["id"]})).json()
    jid = job["id"]
    await advance(
        js,
        pool,
        jid,
        JobSent(job_id=jid, data=SentData(agent="local")),
        JobStarted(job_id=jid, data=StartedData(agent="local")),
    )
    r = await client.post(f"/api/jobs/{jid}/cancel")
    assert r.status_code == 202
    assert r.json()["status"] == "running" and r.json()["cancel_requested"] is True
    msg = await js.get_last_msg("BORGFLOW_JOBS", f"borgflow.jobs.{jid}.cancel_requested")
    assert decode_job_event(msg.data or b"").type == "job.cancel_requested"
    assert (await client.get(f"/api/jobs/{jid}")).json()["cancel_requested"] is True


async def test_cancel_a_finished_job_is_409(client: Client, js: JetStreamContext, pool: asyncpg.Pool) -> None:
    repo = await make_repository(client)
    jid = (await client.post("/api/jobs", json={"type": "check", "repository_id": repo["id"]})).json()["id"]
    await _fail(js, pool, jid)
    r = await client.post(f"/api/jobs/{jid}/cancel")
    assert r.status_code == 409 and r.json()["detail"] == "job already failed"


async def _fail(
    js: JetStreamContext, pool: asyncpg.Pool, jid: str, kind: str = "lock_timeout", archive: str | None = None
) -> None:
    result = JobResult(archive=archive) if archive else None
    await advance(
        js,
        pool,
        jid,
        JobSent(job_id=jid, data=SentData(agent="local")),
        JobStarted(job_id=jid, data=StartedData(agent="local")),
        JobFailed(job_id=jid, data=OutcomeData(result=result, error=JobError(kind=kind, message="gone"))),
    )


async def test_retry_a_failed_job(client: Client, js: JetStreamContext, pool: asyncpg.Pool) -> None:
    repo = await make_repository(client)
    plan = await make_plan(client, repo["id"])
    original = (await client.post("/api/jobs", json={"type": "backup", "plan_id": plan["id"], "priority": 5})).json()
    early = await client.post(f"/api/jobs/{original['id']}/retry")
    assert early.status_code == 409 and "queued" in early.json()["detail"]
    await _fail(js, pool, original["id"])

    r = await client.post(f"/api/jobs/{original['id']}/retry")
    assert r.status_code == 201, r.text
    retry = r.json()
    assert retry["id"] != original["id"] and retry["status"] == "queued"
    assert retry["retry_of"] == original["id"] and retry["attempt"] == 2
    for key in ("type", "plan_id", "repository_id", "agent", "priority", "trigger"):
        assert retry[key] == original[key], key
    assert (await client.get(f"/api/jobs/{original['id']}")).json()["status"] == "failed"
    queued = (await bus.job_events(js, retry["id"]))[0][0]
    assert isinstance(queued, JobQueued) and queued.data.archive is None  # it wrote no archive: nothing to look for


async def test_retry_of_a_backup_lost_after_borg_named_its_archive_looks_for_it(
    client: Client, js: JetStreamContext, pool: asyncpg.Pool
) -> None:
    repo = await make_repository(client)
    plan = await make_plan(client, repo["id"])
    original = (await client.post("/api/jobs", json={"type": "backup", "plan_id": plan["id"]})).json()
    await _fail(js, pool, original["id"], kind="agent_lost", archive="home-2026-12-02T04:00:00")
    retry = (await client.post(f"/api/jobs/{original['id']}/retry")).json()
    queued = (await bus.job_events(js, retry["id"]))[0][0]
    # The executor looks for this archive first and does not back up again if it exists.
    assert isinstance(queued, JobQueued) and queued.data.archive == "home-2026-12-02T04:00:00"


async def test_retry_runs_from_the_snapshot_when_the_plan_is_gone(
    client: Client, js: JetStreamContext, pool: asyncpg.Pool
) -> None:
    repo = await make_repository(client)
    plan = await make_plan(client, repo["id"], paths=["/srv/data"])
    original = (await client.post("/api/jobs", json={"type": "backup", "plan_id": plan["id"]})).json()
    await _fail(js, pool, original["id"])
    assert (await client.delete(f"/api/plans/{plan['id']}")).status_code == 204

    r = await client.post(f"/api/jobs/{original['id']}/retry")
    assert r.status_code == 201, r.text
    retry = r.json()
    assert retry["retry_of"] == original["id"] and retry["plan_id"] == plan["id"]
    events = await bus.job_events(js, retry["id"])
    queued = events[0][0]
    assert isinstance(queued, JobQueued) and queued.data.plan is not None
    assert queued.data.plan.paths == ["/srv/data"]


async def test_delete_jobs(client: Client, js: JetStreamContext, pool: asyncpg.Pool) -> None:
    repo = await make_repository(client)
    queued = (await client.post("/api/jobs", json={"type": "check", "repository_id": repo["id"]})).json()
    running = (await client.post("/api/jobs", json={"type": "compact", "repository_id": repo["id"]})).json()
    await advance(js, pool, running["id"], JobSent(job_id=running["id"], data=SentData(agent="local")))

    r = await client.delete(f"/api/jobs/{running['id']}")
    assert r.status_code == 409 and "sent" in r.json()["detail"]

    log_subject = f"borgflow.logs.{queued['id']}"
    await bus.publish(js, JobLog(job_id=queued["id"], data=LogData(lines=[LogLine(at=utcnow(), message="x")])))
    assert (await js.get_last_msg("BORGFLOW_LOGS", log_subject)).seq

    assert (await client.delete(f"/api/jobs/{queued['id']}")).status_code == 204
    with pytest.raises(NotFoundError):
        await js.get_last_msg("BORGFLOW_LOGS", log_subject)
    assert (await client.get(f"/api/jobs/{queued['id']}")).status_code == 404
    subjects = [
        decode_job_event((await js.get_msg("BORGFLOW_JOBS", seq)).data or b"").type
        for seq in range(1, (await js.stream_info("BORGFLOW_JOBS")).state.last_seq + 1)
    ]
    assert subjects[-2:] == ["job.cancelled", "job.deleted"]
    assert await bus.load_job(js, queued["id"]) is None


async def test_list_filters_and_pages(client: Client, js: JetStreamContext, pool: asyncpg.Pool) -> None:
    repo = await make_repository(client, "alpha-repo")
    made = []
    for _ in range(5):
        r = await client.post("/api/jobs", json={"type": "check", "repository_id": repo["id"]})
        made.append(r.json()["id"])
    ping = (await client.post("/api/jobs", json={"type": "ping", "agent": "web-1", "trigger": "cli"})).json()
    await _fail(js, pool, made[0])

    everything = (await client.get("/api/jobs")).json()
    assert [j["id"] for j in everything["items"]] == [ping["id"], *reversed(made)]
    assert everything["next_cursor"] is None

    ids_seen: list[str] = []
    cursor = None
    while True:
        query = "limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = (await client.get(f"/api/jobs?{query}")).json()
        ids_seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert ids_seen == [j["id"] for j in everything["items"]]

    async def ids(query: str) -> list[str]:
        r = await client.get(f"/api/jobs?{query}")
        assert r.status_code == 200, r.text
        return [j["id"] for j in r.json()["items"]]

    assert await ids("status=failed") == [made[0]]
    assert await ids("status=queued,failed&type=check") == list(reversed(made))
    assert await ids("type=ping") == [ping["id"]]
    assert await ids("agent=web-1") == [ping["id"]]
    assert await ids("trigger=cli") == [ping["id"]]
    assert await ids(f"repository_id={repo['id']}&limit=1") == [made[-1]]
    assert await ids("q=ALPHA") == list(reversed(made))
    assert await ids("since=1h") == [ping["id"], *reversed(made)]
    assert await ids("until=2000-01-01T00:00:00Z") == []
    assert await ids("since=2000-01-01T00:00:00") != []


async def test_job_view_is_the_contract_job(client: Client) -> None:
    repo = await make_repository(client)
    r = await client.post(
        "/api/jobs",
        json={
            "type": "restore",
            "repository_id": repo["id"],
            "archive": "a1",
            "options": {"destination": "/restore/here", "paths": ["etc/app"]},
        },
    )
    assert r.status_code == 201, r.text
    job = r.json()
    contract_keys = {
        "id", "type", "status", "agent", "project", "repository_id", "plan_id", "archive", "trigger",
        "requested_by", "priority", "retry_of", "parent_id", "created_at", "sent_at", "started_at",
        "finished_at", "duration_s", "waiting", "attempt", "options", "progress", "result", "error",
    }  # fmt: skip
    assert contract_keys <= set(job)
    assert job["options"] == {"destination": "/restore/here", "paths": ["etc/app"]}
    assert msgspec.json.decode(msgspec.json.encode(job)) == job

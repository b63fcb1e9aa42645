"""A job's log as a download, and the passphrase only while the job runs."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
from nats.js import JetStreamContext

from shared import bus
from shared.events import (
    JobCompleted,
    JobLog,
    JobSent,
    JobStarted,
    LogData,
    LogLine,
    SentData,
    StartedData,
)
from tests.api.conftest import PASSPHRASE, Client, advance, auth, make_repository

T0 = datetime(2026, 11, 23, 16, 20, 0, 123_000, tzinfo=UTC)


async def test_log_download_has_every_line(client: Client, js: JetStreamContext) -> None:
    repo = await make_repository(client)
    jid = (await client.post("/api/jobs", json={"type": "check", "repository_id": repo["id"]})).json()["id"]

    empty = await client.get(f"/api/jobs/{jid}/log")
    assert empty.status_code == 200 and empty.text == ""

    await bus.publish(
        js,
        JobLog(
            job_id=jid,
            data=LogData(
                lines=[
                    LogLine(at=T0, message="Starting repository check"),
                    LogLine(at=T0, level="warning", message="slow disk", source="executor"),
                ]
            ),
        ),
    )
    await bus.publish(js, JobLog(job_id=jid, data=LogData(lines=[LogLine(at=T0, message="done")])))
    await bus.publish(js, JobLog(job_id="other", data=LogData(lines=[LogLine(at=T0, message="not mine")])))

    r = await client.get(f"/api/jobs/{jid}/log")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert r.headers["content-disposition"] == f'attachment; filename="job-{jid}.log"'
    assert r.text.splitlines() == [
        "2026-11-23T16:20:00.123Z INFO  [borg] Starting repository check",
        "2026-11-23T16:20:00.123Z WARNING [executor] slow disk",
        "2026-11-23T16:20:00.123Z INFO  [borg] done",
    ]


async def test_secret_only_while_sent_or_running(
    client: Client, js: JetStreamContext, pool: asyncpg.Pool, agent_token: str
) -> None:
    repo = await make_repository(client)
    jid = (await client.post("/api/jobs", json={"type": "check", "repository_id": repo["id"]})).json()["id"]
    path = f"/api/jobs/{jid}/secret"

    queued = await client.get(path, headers=auth(agent_token))
    assert queued.status_code == 403 and PASSPHRASE not in queued.text
    assert (await client.get(path)).status_code == 409  # an admin is told why: the job is not running

    await advance(js, pool, jid, JobSent(job_id=jid, data=SentData(agent="local")))
    sent = await client.get(path, headers=auth(agent_token))
    assert sent.status_code == 200 and sent.json() == {"passphrase": PASSPHRASE}
    assert sent.headers["cache-control"] == "no-store"

    await advance(js, pool, jid, JobStarted(job_id=jid, data=StartedData(agent="local")))
    assert (await client.get(path)).json() == {"passphrase": PASSPHRASE}  # admin may too

    await advance(js, pool, jid, JobCompleted(job_id=jid))
    done = await client.get(path, headers=auth(agent_token))
    assert done.status_code == 403 and PASSPHRASE not in done.text

    # A job of a repository without a passphrase gets null.
    bare = await make_repository(client, "bare", passphrase=None)
    jid2 = (await client.post("/api/jobs", json={"type": "check", "repository_id": bare["id"]})).json()["id"]
    await advance(js, pool, jid2, JobSent(job_id=jid2, data=SentData(agent="local")))
    assert (await client.get(f"/api/jobs/{jid2}/secret", headers=auth(agent_token))).json() == {"passphrase": None}

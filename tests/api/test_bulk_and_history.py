"""The typed search on GET /api/jobs, POST /api/jobs/bulk (roles, projects, counts, bad input),
the status counts of GET /api/queue, and GET /api/jobs/{id}/history of a retried job."""

from __future__ import annotations

import asyncpg
from nats.js import JetStreamContext

from shared.events import (
    JobError,
    JobFailed,
    JobResult,
    JobSent,
    JobStarted,
    OutcomeData,
    SentData,
    StartedData,
)
from tests.api.conftest import Client, advance, make_plan, make_repository
from tests.api.projects_world import OTHER, OWN, make_job, make_repo, make_tokens


async def _fail(js: JetStreamContext, pool: asyncpg.Pool, jid: str, exit_code: int, kind: str = "borg_error") -> None:
    await advance(
        js,
        pool,
        jid,
        JobSent(job_id=jid, data=SentData(agent="local")),
        JobStarted(job_id=jid, data=StartedData(agent="local", host="box")),
        JobFailed(
            job_id=jid,
            data=OutcomeData(
                result=JobResult(exit_code=exit_code),
                error=JobError(kind=kind, message="borg said no", exit_code=exit_code),
            ),
        ),
    )


async def _ids(client: Client, q: str) -> list[str]:
    r = await client.get("/api/jobs", params={"q": q})
    assert r.status_code == 200, r.text
    return [j["id"] for j in r.json()["items"]]


async def test_search_bulk_and_history(client: Client, js: JetStreamContext, pool: asyncpg.Pool) -> None:
    home = await make_repository(client, "home")
    nightly = await make_plan(client, home["id"], "db nightly")
    other = await make_repository(client, "media")
    backup = (await client.post("/api/jobs", json={"type": "backup", "plan_id": nightly["id"]})).json()
    checks = [
        (await client.post("/api/jobs", json={"type": "check", "repository_id": other["id"]})).json()["id"]
        for _ in range(3)
    ]
    ping = (await client.post("/api/jobs", json={"type": "ping", "agent": "web-1", "trigger": "cli"})).json()
    await _fail(js, pool, backup["id"], 2)

    # The typed search, each term alone and together.
    assert await _ids(client, "type:backup status:failed") == [backup["id"]]
    assert await _ids(client, "repo:HOME") == [backup["id"]]
    assert await _ids(client, f"repo:{other['id']}") == list(reversed(checks))
    assert await _ids(client, 'plan:"db nightly" exit:2') == [backup["id"]]
    assert await _ids(client, "exit:1") == []
    assert await _ids(client, "agent:web-1 trigger:cli") == [ping["id"]]
    assert await _ids(client, "status:queued,failed type:check,backup media") == list(reversed(checks))
    assert await _ids(client, "media nosuchword") == []
    page = (await client.get("/api/jobs", params={"q": "type:check", "limit": 2})).json()
    rest = (await client.get("/api/jobs", params={"q": "type:check", "limit": 2, "cursor": page["next_cursor"]})).json()
    assert [j["id"] for j in page["items"] + rest["items"]] == list(reversed(checks)) and rest["next_cursor"] is None
    for q, term in [("status:lost", "status:lost"), ("colour:red media", "colour:red"), ("exit:x", "exit:x")]:
        r = await client.get("/api/jobs", params={"q": q})
        assert r.status_code == 400 and r.json()["field"] == "q" and term in r.json()["detail"], r.text

    # Counts per status come with the queue summary.
    by_status = (await client.get("/api/queue")).json()["by_status"]
    assert by_status["failed"] >= 1 and by_status["queued"] >= 4

    # Bulk: a dry run counts, then two checks by id are cancelled; a finished job is refused 409.
    dry = (await client.post("/api/jobs/bulk", json={"action": "cancel", "q": "type:check", "dry_run": True})).json()
    assert (dry["matched"], dry["done"], dry["items"]) == (3, 0, [])
    r = await client.post("/api/jobs/bulk", json={"action": "cancel", "ids": [checks[0], checks[1], backup["id"]]})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert (answer["matched"], answer["done"], answer["refused"]) == (3, 2, 1)
    refused = next(i for i in answer["items"] if not i["ok"])
    assert refused["id"] == backup["id"] and refused["status"] == 409
    assert await _ids(client, "status:cancelled") == [checks[1], checks[0]]

    # By search: every cancelled check is retried; the retries point back.
    answer = (await client.post("/api/jobs/bulk", json={"action": "retry", "q": "status:cancelled type:check"})).json()
    assert (answer["matched"], answer["done"], answer["refused"]) == (2, 2, 0)
    retries = {i["id"]: i["job_id"] for i in answer["items"]}
    assert (await client.get(f"/api/jobs/{retries[checks[0]]}")).json()["retry_of"] == checks[0]

    # Bad input names its field.
    for body, field in [
        ({"action": "cancel"}, "ids"),
        ({"action": "cancel", "ids": [ping["id"]], "q": "x"}, "ids"),
        ({"action": "cancel", "q": "  "}, "q"),
        ({"action": "cancel", "q": '"" ""'}, "q"),
        ({"action": "cancel", "q": "status:nope"}, "q"),
        ({"action": "explode", "ids": [ping["id"]]}, "action"),
        ({"action": "cancel", "ids": "x"}, "ids"),
    ]:
        r = await client.post("/api/jobs/bulk", json=body)
        assert r.status_code == 400 and r.json().get("field") == field, (body, r.text)
    unknown = (await client.post("/api/jobs/bulk", json={"action": "delete", "ids": ["nosuchjob", "../x"]})).json()
    assert [i["status"] for i in unknown["items"]] == [404, 404]

    # The history of a job retried twice: every attempt with its exit code, the timeline, the configuration.
    await _fail(js, pool, backup["id"], 2)  # already failed: nothing changes
    second = (await client.post(f"/api/jobs/{backup['id']}/retry")).json()
    await _fail(js, pool, second["id"], 3, kind="lock_timeout")
    third = (await client.post(f"/api/jobs/{second['id']}/retry")).json()
    for jid in (backup["id"], second["id"], third["id"]):
        history = (await client.get(f"/api/jobs/{jid}/history")).json()
        attempts = [(a["id"], a["attempt"], a["status"], a["exit_code"]) for a in history["attempts"]]
        assert attempts == [
            (backup["id"], 1, "failed", 2),
            (second["id"], 2, "failed", 3),
            (third["id"], 3, "queued", None),
        ], jid
    assert history["attempts"][1]["error"]["kind"] == "lock_timeout"
    timeline = (await client.get(f"/api/jobs/{second['id']}/history")).json()["timeline"]
    assert [(t["event"], t["actor"]["kind"]) for t in timeline] == [
        ("job.queued", "token"),
        ("job.sent", "dispatcher"),
        ("job.started", "executor"),
        ("job.failed", "executor"),
    ]
    assert timeline[0]["actor"]["name"] == "admin" and timeline[-1]["exit_code"] == 3
    config = history["configuration"]
    assert config["plan"]["name"] == "db nightly" and config["repository"]["name"] == "home"
    assert config["repository"]["has_passphrase"] is True and "correct horse" not in str(history)
    assert (await client.get("/api/jobs/nosuchjob/history")).status_code == 404


async def test_bulk_respects_roles_and_projects(client: Client) -> None:
    tokens = await make_tokens(client)
    own = await make_repo(client, OWN)
    other = await make_repo(client, OTHER)
    mine = [await make_job(client, own) for _ in range(2)]
    theirs = await make_job(client, other)

    r = await client.post("/api/jobs/bulk", json={"action": "cancel", "ids": mine}, headers=tokens["viewer"])
    assert r.status_code == 403
    r = await client.post("/api/jobs/bulk", json={"action": "delete", "ids": mine}, headers=tokens["operator"])
    assert r.status_code == 403 and "write" in r.json()["detail"]

    # An operator of alpha: beta's job reads as absent, and a search sees only alpha.
    body = {"action": "cancel", "ids": [mine[0], theirs]}
    answer = (await client.post("/api/jobs/bulk", json=body, headers=tokens["operator"])).json()
    assert [(i["id"], i["status"]) for i in answer["items"]] == [(mine[0], 202), (theirs, 404)]
    body = {"action": "cancel", "q": "status:queued type:check", "dry_run": True}
    assert (await client.post("/api/jobs/bulk", json=body, headers=tokens["operator"])).json()["matched"] == 1
    answer = (await client.post("/api/jobs/bulk", json={**body, "dry_run": False}, headers=tokens["operator"])).json()
    assert [i["id"] for i in answer["items"]] == [mine[1]] and answer["done"] == 1
    assert (await client.get(f"/api/jobs/{theirs}")).json()["status"] == "queued"
    r = await client.get(f"/api/jobs/{theirs}/history", headers=tokens["viewer"])
    assert r.status_code == 404

    # The admin deletes across projects.
    answer = (await client.post("/api/jobs/bulk", json={"action": "delete", "ids": [*mine, theirs]})).json()
    assert (answer["done"], answer["refused"]) == (3, 0)

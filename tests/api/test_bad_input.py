"""Bad input is 400/422 naming the field, never a 500, and never leaves a half-written job."""

from __future__ import annotations

from typing import Any

from nats.js import JetStreamContext

from tests.api.conftest import Client, jobs_stream_count, make_plan, make_repository

BAD_JOBS: list[tuple[Any, str]] = [
    ({"type": "explode", "repository_id": "r"}, "type"),
    ({"plan_id": "p"}, "type"),
    ({"type": "backup"}, "plan_id"),
    ({"type": "backup", "plan_id": "missing"}, "plan_id"),
    ({"type": "check"}, "repository_id"),
    ({"type": "check", "repository_id": "missing"}, "repository_id"),
    (
        {"type": "restore", "repository_id": "R", "archive": "a", "options": {"destination": "rel/dir"}},
        "options.destination",
    ),
    ({"type": "restore", "repository_id": "R", "archive": "a", "options": {}}, "options.destination"),
    ({"type": "restore", "repository_id": "R", "options": {"destination": "/abs"}}, "archive"),
    ({"type": "check", "repository_id": "R", "priority": "high"}, "priority"),
    ({"type": "check", "repository_id": "R", "options": {"verify_data": "yes"}}, "options.verify_data"),
    ({"type": "check", "repository_id": "R", "bogus": 1}, "bogus"),
    ({"type": "check", "repository_id": "R", "trigger": "schedule"}, "trigger"),
    ({"type": "ping"}, "agent"),
    ([1, 2], "body"),
]


async def test_bad_job_requests_name_the_field_and_append_nothing(client: Client, js: JetStreamContext) -> None:
    repo = await make_repository(client)
    before = await jobs_stream_count(js)
    for body, field in BAD_JOBS:
        if isinstance(body, dict) and body.get("repository_id") == "R":
            body = body | {"repository_id": repo["id"]}
        r = await client.post("/api/jobs", json=body)
        assert r.status_code in (400, 422), (body, r.text)
        answer = r.json()
        assert answer["detail"] and answer["field"] == field, (body, answer)
    assert await jobs_stream_count(js) == before
    assert (await client.get("/api/jobs")).json()["items"] == []


async def test_malformed_json_is_400(client: Client) -> None:
    for path in ("/api/jobs", "/api/repositories", "/api/plans"):
        r = await client.post(path, content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 400, (path, r.text)
        assert r.json()["field"] == "body"
    r = await client.post("/api/repositories", content=b"", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["field"] == "body"


BAD_REPOSITORIES: list[tuple[dict[str, Any], str]] = [
    ({"location": "/x", "agent": "a"}, "name"),
    ({"name": "n", "agent": "a"}, "location"),
    ({"name": 5, "location": "/x", "agent": "a"}, "name"),
    ({"name": "", "location": "/x", "agent": "a"}, "name"),
    ({"name": "n", "location": "/x", "agent": "a.b"}, "agent"),
    ({"name": "n", "location": "/x", "agent": "a", "colour": "red"}, "colour"),
]


async def test_bad_repositories(client: Client) -> None:
    for body, field in BAD_REPOSITORIES:
        r = await client.post("/api/repositories", json=body)
        assert r.status_code in (400, 422), (body, r.text)
        assert r.json()["field"] == field, (body, r.json())
    assert (await client.get("/api/repositories")).json()["items"] == []


BAD_PLANS: list[tuple[dict[str, Any], str]] = [
    ({"paths": []}, "paths"),
    ({"paths": ["relative/dir"]}, "paths"),
    ({"paths": "/etc"}, "paths"),
    ({"queue_behavior": "wait"}, "queue_behavior"),
    ({"max_queue_depth": 0}, "max_queue_depth"),
    ({"stall_timeout_s": 0}, "stall_timeout_s"),
    ({"retention": {"keep_daily": -1}}, "retention.keep_daily"),
    ({"retention": {"keep_hourly": 1}}, "retention.keep_hourly"),
    ({"archive_name": "a/b"}, "archive_name"),
    ({"archive_name": "a::b"}, "archive_name"),
    ({"archive_name": ""}, "archive_name"),
    ({"repository_id": "missing"}, "repository_id"),
]


async def test_bad_plans(client: Client) -> None:
    repo = await make_repository(client)
    for fields, field in BAD_PLANS:
        body = {"name": "p", "repository_id": repo["id"], "paths": ["/etc"]} | fields
        r = await client.post("/api/plans", json=body)
        assert r.status_code in (400, 422), (fields, r.text)
        assert r.json()["field"] == field, (fields, r.json())
    assert (await client.get("/api/plans")).json()["items"] == []


async def test_bad_query_parameters(client: Client) -> None:
    for query, field in [
        ("status=lost", "status"),
        ("type=explode", "type"),
        ("since=yesterday", "since"),
        ("until=3x", "until"),
        ("limit=abc", "limit"),
        ("limit=0", "limit"),
        ("cursor=%%%", "cursor"),
    ]:
        r = await client.get(f"/api/jobs?{query}")
        assert r.status_code == 400, (query, r.text)
        assert r.json()["field"] == field


async def test_unknown_ids_are_404(client: Client) -> None:
    repo = await make_repository(client)
    plan = await make_plan(client, repo["id"])
    assert plan
    for method, path in [
        ("GET", "/api/jobs/nope"),
        ("GET", "/api/jobs/a.b.c"),
        ("POST", "/api/jobs/nope/cancel"),
        ("POST", "/api/jobs/nope/retry"),
        ("DELETE", "/api/jobs/nope"),
        ("GET", "/api/jobs/nope/log"),
        ("GET", "/api/plans/nope"),
        ("PUT", "/api/repositories/nope"),
    ]:
        r = await client.request(method, path, json={})
        assert r.status_code == 404, (method, path, r.text)
        assert r.json()["detail"]


async def test_nul_characters_are_refused_naming_the_field(client: Client) -> None:
    repo = await make_repository(client)
    for path, body, field in [
        ("/api/repositories", {"name": "a\x00b", "location": "/x", "agent": "local"}, "name"),
        ("/api/jobs", {"type": "check", "repository_id": "r\x00"}, "repository_id"),
        (
            "/api/schedules",
            {"name": "s", "cron": "0 3 * * *", "job": {"type": "check", "archive": "\x00"}},
            "job.archive",
        ),
        ("/api/notifications", {"name": "n", "url": "json://127.0.0.1:9/x", "events": ["a.b\x00"]}, "events"),
        ("/api/tokens", {"name": "\x00", "role": "viewer"}, "name"),
    ]:
        r = await client.post(path, json=body)
        assert r.status_code == 400, (path, r.text)
        assert r.json()["field"] == field, (path, r.json())
    r = await client.put(f"/api/repositories/{repo['id']}", json={"location": "/x\x00"})
    assert r.status_code == 400 and r.json()["field"] == "location"
    for query, field in [("q=%00", "q"), ("agent=a%00", "agent")]:
        r = await client.get(f"/api/jobs?{query}")
        assert r.status_code == 400 and r.json()["field"] == field, (query, r.text)
    assert (await client.get("/api/calendar?from=2026-01-01%00")).json()["field"] == "from"

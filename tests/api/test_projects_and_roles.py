"""Roles × endpoints × projects: what an admin, an operator and a viewer of project `alpha`
may do to things of `alpha` (own) and of `beta` (other).

The matrix is the table below, one row per endpoint: the expected status for
admin own/other, operator own/other, viewer own/other. `101` is a websocket accepted,
`44xx` one refused with that close code. Things of another project answer as absent
ones do: 404 for a path, 422 naming the field for a body reference.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any

import asyncpg
from nats.js import JetStreamContext

from shared import bus
from shared.events import JobProgress, JobSent, Progress, SentData
from tests.api.conftest import Client, advance
from tests.api.projects_world import (
    OTHER,
    OWN,
    ROLES,
    Things,
    make_job,
    make_plan,
    make_repo,
    make_things,
    make_tokens,
    scheduled_job,
)

TIMEOUT = 5.0

# Expected codes: (admin own, admin other, operator own, operator other, viewer own, viewer other).
Codes = tuple[int, int, int, int, int, int]


def read(ok: int = 200, hidden: int = 404) -> Codes:
    return (ok, ok, ok, hidden, ok, hidden)


def write(ok: int) -> Codes:
    return (ok, ok, 403, 403, 403, 403)


def run(ok: int, hidden: int = 404) -> Codes:
    return (ok, ok, ok, hidden, 403, 403)


def everyone(ok: int = 200) -> Codes:
    return (ok, ok, ok, ok, ok, ok)


def admin_only(ok: int) -> Codes:
    return (ok, ok, 403, 403, 403, 403)


@dataclass(frozen=True)
class Row:
    method: str  # an HTTP method, or WS
    path: str  # placeholders: a thing of the target project ({repo}), or a fresh one ({new_repo})
    expect: Codes
    body: Any = None


MATRIX: list[Row] = [
    Row("GET", "/api/repositories", everyone()),
    Row(
        "POST",
        "/api/repositories",
        write(201),
        {"name": "{unique}", "location": "/x", "agent": "local", "project": "{project}"},
    ),
    Row("GET", "/api/repositories/{repo}", read()),
    Row("PUT", "/api/repositories/{repo}", write(200), {"location": "/srv/moved"}),
    Row("DELETE", "/api/repositories/{new_repo}", write(204)),
    Row("GET", "/api/repositories/{repo}/archives", read()),
    Row("GET", "/api/plans", everyone()),
    Row("POST", "/api/plans", write(201), {"name": "{unique}", "repository_id": "{repo}", "paths": ["/etc"]}),
    Row("GET", "/api/plans/{plan}", read()),
    Row("PUT", "/api/plans/{plan}", write(200), {"compression": "zstd"}),
    Row("DELETE", "/api/plans/{new_plan}", write(204)),
    Row("GET", "/api/schedules", everyone()),
    Row(
        "POST",
        "/api/schedules",
        write(201),
        {"name": "{unique}", "cron": "0 4 * * *", "job": {"type": "check", "repository_id": "{repo}"}},
    ),
    Row("GET", "/api/schedules/{schedule}", read()),
    Row("PUT", "/api/schedules/{schedule}", write(200), {"cron": "0 5 * * *"}),
    Row("DELETE", "/api/schedules/{new_schedule}", write(204)),
    Row("GET", "/api/notifications", everyone()),
    Row(
        "POST",
        "/api/notifications",
        write(201),
        {"name": "{unique}", "url": "json://127.0.0.1:9/x", "project": "{project}"},
    ),
    Row("GET", "/api/notifications/{notification}", read()),
    Row("PUT", "/api/notifications/{notification}", write(200), {"events": ["*.failed"]}),
    Row("DELETE", "/api/notifications/{new_notification}", write(204)),
    Row("POST", "/api/notifications/{notification}/test", write(502)),  # nothing listens there
    Row("GET", "/api/notifications/{notification}/deliveries", read()),
    Row("POST", "/api/jobs", run(201, hidden=422), {"type": "check", "repository_id": "{repo}"}),
    Row("POST", "/api/jobs", run(201, hidden=422), {"type": "backup", "plan_id": "{new_plan}"}),
    Row("GET", "/api/jobs", everyone()),
    Row("GET", "/api/jobs/{job}", read()),
    Row("POST", "/api/jobs/{new_job}/cancel", run(202)),
    Row("POST", "/api/jobs/{cancelled_job}/retry", run(201)),
    Row("DELETE", "/api/jobs/{cancelled_job}", write(204)),
    Row("GET", "/api/jobs/{job}/log", read()),
    Row("GET", "/api/jobs/{job}/secret", admin_only(409)),  # executors' (agent role); a queued job has none yet
    Row("WS", "/api/jobs/{job}/log/follow", read(101, hidden=4404)),
    Row("WS", "/api/events", everyone(101)),
    Row("WS", "/api/events?job_id={job}", read(101, hidden=4404)),
    Row("GET", "/api/queue", everyone()),
    Row("GET", "/api/agents", everyone()),
    Row("GET", "/api/calendar", everyone()),
    Row("GET", "/api/settings", everyone()),
    Row("PUT", "/api/settings", admin_only(200), {"log_retention_days": 30}),
    Row("GET", "/api/tokens", admin_only(200)),
    Row("POST", "/api/tokens", admin_only(201), {"name": "{unique}", "role": "viewer", "project": "{project}"}),
    Row("DELETE", "/api/tokens/{new_token}", admin_only(204)),
]


class Resolver:
    """Fills a row's placeholders for one target project, making fresh things as asked (as admin)."""

    def __init__(self, client: Client, things: Things) -> None:
        self.client = client
        self.things = things
        self.n = 0

    async def value(self, name: str) -> str:
        t, c = self.things, self.client
        if hasattr(t, name):
            return str(getattr(t, name))
        self.n += 1
        if name == "unique":
            return f"x{self.n}-{t.project}-{id(self)}"
        if name == "new_repo":
            return await make_repo(c, t.project)
        if name == "new_plan":
            return await make_plan(c, t.repo)
        if name in ("new_job", "cancelled_job"):
            return await make_job(c, t.repo, cancelled=name == "cancelled_job")
        body: dict[str, Any]
        if name == "new_schedule":
            path, body = "/api/schedules", {"name": f"s{self.n}", "cron": "0 1 * * *",
                                            "job": {"type": "check", "repository_id": t.repo}}  # fmt: skip
        elif name == "new_notification":
            path, body = "/api/notifications", {"name": f"n{self.n}", "url": "json://127.0.0.1:9/x",
                                                "project": t.project}  # fmt: skip
        elif name == "new_token":
            path, body = "/api/tokens", {"name": f"t{self.n}", "role": "viewer", "project": t.project}
        else:
            raise KeyError(name)
        r = await c.post(path, json=body)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    async def fill(self, template: Any) -> Any:
        if isinstance(template, str):
            names = [f for _, f, _, _ in string.Formatter().parse(template) if f]
            values = {n: await self.value(n) for n in names}
            return template.format(**values)
        if isinstance(template, dict):
            return {k: await self.fill(v) for k, v in template.items()}
        if isinstance(template, list):
            return [await self.fill(v) for v in template]
        return template


async def call(client: Client, row: Row, things: Things, headers: dict[str, str]) -> int:
    resolver = Resolver(client, things)
    path = await resolver.fill(row.path)
    body = await resolver.fill(row.body)
    if row.method != "WS":
        r = await client.request(row.method, path, json=body, headers=headers)
        assert r.status_code < 500 or r.status_code == 502, (row, r.text)  # 502: a notification test send
        return r.status_code
    token = headers["Authorization"].removeprefix("Bearer ")
    sep = "&" if "?" in path else "?"
    # Refused sockets are accepted and closed at once with 4000 + the status: an open one
    # still open after a moment was accepted.
    async with client.websocket(f"{path}{sep}token={token}", {"Authorization": ""}) as ws:
        try:
            return await ws.closed_with(timeout=0.3)
        except TimeoutError:
            return 101


def markdown(rows: list[Row]) -> str:
    head = "| endpoint | admin own | admin other | operator own | operator other | viewer own | viewer other |"
    lines = [head, "|" + "---|" * 7]
    for row in rows:
        lines.append(f"| `{row.method} {row.path}` | " + " | ".join(str(c) for c in row.expect) + " |")
    return "\n".join(lines)


async def test_the_role_endpoint_project_matrix(client: Client) -> None:
    own, other = await make_things(client, OWN), await make_things(client, OTHER)
    tokens = await make_tokens(client)
    wrong: list[str] = []
    for row in MATRIX:
        got: list[int] = []
        for role in ROLES:
            for things in (own, other):
                got.append(await call(client, row, things, tokens[role]))
        if tuple(got) != row.expect:
            wrong.append(f"{row.method} {row.path}: expected {row.expect}, got {tuple(got)}")
    print("\n" + markdown(MATRIX))
    assert not wrong, "\n".join(wrong)


async def test_lists_show_only_the_tokens_project(client: Client, js: JetStreamContext, pool: asyncpg.Pool) -> None:
    own, other = await make_things(client, OWN), await make_things(client, OTHER)
    tokens = await make_tokens(client)
    own_scheduled, other_scheduled = await scheduled_job(js, pool, own), await scheduled_job(js, pool, other)
    # A job of each project sent to the agent `local`, which has a heartbeat.
    await pool.execute("INSERT INTO agents (name, last_seen) VALUES ('local', now())")
    own_sent, other_sent = await make_job(client, own.repo), await make_job(client, other.repo)
    for job_id in (own_sent, other_sent):
        await advance(js, pool, job_id, JobSent(job_id=job_id, data=SentData(agent="local")))

    async def ids(path: str, headers: dict[str, str]) -> set[str]:
        r = await client.get(path, headers=headers)
        assert r.status_code == 200, r.text
        answer = r.json()
        if path == "/api/queue":
            return {j["id"] for j in answer["queued"]}
        if path == "/api/agents":
            return {j for a in answer["items"] for j in a["running"]}
        return {i.get("job_id") or i.get("id") for i in answer["items"]}

    lists = {
        "/api/repositories": (own.repo, other.repo),
        "/api/plans": (own.plan, other.plan),
        "/api/schedules": (own.schedule, other.schedule),
        "/api/notifications": (own.notification, other.notification),
        "/api/jobs": (own.job, other.job),
        "/api/queue": (own.job, other.job),
        "/api/calendar": (own_scheduled, other_scheduled),
        "/api/agents": (own_sent, other_sent),
    }
    for path, (mine, theirs) in lists.items():
        assert {mine, theirs} <= await ids(path, tokens["admin"]), path
        for role in ("operator", "viewer"):
            seen = await ids(path, tokens[role])
            assert mine in seen and theirs not in seen, (path, role, seen)
    # The queue's counts are the project's too.
    admin_q = (await client.get("/api/queue", headers=tokens["admin"])).json()
    viewer_q = (await client.get("/api/queue", headers=tokens["viewer"])).json()
    assert viewer_q["in_queue"] < admin_q["in_queue"]


async def test_operator_jobs_are_of_its_project(client: Client) -> None:
    own, other = await make_things(client, OWN), await make_things(client, OTHER)
    operator = (await make_tokens(client))["operator"]
    job = (await client.post("/api/jobs", json={"type": "check", "repository_id": own.repo}, headers=operator)).json()
    assert job["project"] == OWN
    # A ping belongs to no repository: it takes the token's project, and so does its retry.
    ping = (await client.post("/api/jobs", json={"type": "ping", "agent": "local"}, headers=operator)).json()
    assert ping["project"] == OWN
    await client.post(f"/api/jobs/{ping['id']}/cancel", headers=operator)
    again = await client.post(f"/api/jobs/{ping['id']}/retry", headers=operator)
    assert again.status_code == 201 and again.json()["project"] == OWN
    # Referring to another project's things reads as referring to nothing.
    r = await client.post("/api/jobs", json={"type": "backup", "plan_id": other.plan}, headers=operator)
    assert r.status_code == 422 and r.json()["field"] == "plan_id" and OTHER not in r.text
    absent = await client.post("/api/jobs", json={"type": "backup", "plan_id": "nope"}, headers=operator)
    assert absent.status_code == r.status_code and absent.json()["field"] == r.json()["field"]
    r = await client.get(f"/api/jobs/{other.job}", headers=operator)
    assert r.status_code == 404 and r.json()["detail"] == f"no job {other.job}"


async def test_events_of_other_projects_are_not_forwarded(client: Client, js: JetStreamContext) -> None:
    own, other = await make_things(client, OWN), await make_things(client, OTHER)
    tokens = await make_tokens(client)
    viewer = tokens["viewer"]["Authorization"].removeprefix("Bearer ")
    ws = client.websocket(f"/api/events?token={viewer}", {"Authorization": ""})
    async with ws:
        # Other project first: had it been forwarded, it would arrive first (one subscription, in order).
        await bus.publish(js, JobSent(job_id=other.job, data=SentData(agent="local")))
        await bus.publish(js, JobSent(job_id=own.job, data=SentData(agent="local")))
        got = await ws.receive_json(timeout=TIMEOUT)
        assert (got["type"], got["job_id"]) == ("job.sent", own.job)
        await bus.publish(js, JobProgress(job_id=other.job, data=Progress(percent=10.0)))
        await bus.publish(js, JobProgress(job_id=own.job, data=Progress(percent=20.0)))
        got = await ws.receive_json(timeout=TIMEOUT)
        assert (got["type"], got["job_id"], got["data"]["percent"]) == ("job.progress", own.job, 20.0)
        # A job queued after the socket opened: its project comes with its job.queued.
        fresh_other, fresh_own = await make_job(client, other.repo), await make_job(client, own.repo)
        got = await ws.receive_json(timeout=TIMEOUT)
        assert (got["type"], got["job_id"]) == ("job.queued", fresh_own), (fresh_other, got)

    # The admin gets both.
    admin = client.websocket("/api/events?type=job.sent")
    async with admin:
        await bus.publish(js, JobSent(job_id=fresh_other, data=SentData(agent="local")))
        assert (await admin.receive_json(timeout=TIMEOUT))["job_id"] == fresh_other

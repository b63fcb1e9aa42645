"""Two projects' worth of configuration and jobs, and tokens limited to one of them.

`alpha` is the project of the operator and viewer tokens; `beta` is another project.
The admin token (project `default`) sees both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from nats.js import JetStreamContext

from shared import ids
from shared.events import JobQueued, JobSpec
from tests.api.conftest import ADMIN_TOKEN, Client, advance, auth

OWN, OTHER = "alpha", "beta"
ROLES = ("admin", "operator", "viewer")


@dataclass(frozen=True)
class Things:
    """The ids of one project's things."""

    project: str
    repo: str
    plan: str
    schedule: str
    notification: str
    job: str  # queued


async def _ok(client: Client, method: str, path: str, body: Any = None) -> dict[str, Any]:
    r = await client.request(method, path, json=body)
    assert r.status_code in (200, 201, 202), (method, path, r.text)
    out: dict[str, Any] = r.json()
    return out


async def make_repo(client: Client, project: str) -> str:
    name = f"{project}-{ids.new_id()[-8:]}"
    body = {"name": name, "location": f"/srv/{name}", "agent": "local", "project": project}
    return str((await _ok(client, "POST", "/api/repositories", body))["id"])


async def make_plan(client: Client, repo: str) -> str:
    body = {"name": f"plan-{ids.new_id()[-8:]}", "repository_id": repo, "paths": ["/etc"]}
    return str((await _ok(client, "POST", "/api/plans", body))["id"])


async def make_job(client: Client, repo: str, *, cancelled: bool = False) -> str:
    job_id = str((await _ok(client, "POST", "/api/jobs", {"type": "check", "repository_id": repo}))["id"])
    if cancelled:
        await _ok(client, "POST", f"/api/jobs/{job_id}/cancel")
    return job_id


async def make_things(client: Client, project: str) -> Things:
    repo = await make_repo(client, project)
    plan = await make_plan(client, repo)
    schedule = await _ok(
        client,
        "POST",
        "/api/schedules",
        {"name": f"nightly-{project}", "cron": "0 3 * * *", "job": {"type": "check", "repository_id": repo}},
    )
    notification = await _ok(
        client,
        "POST",
        "/api/notifications",
        {"name": f"ops-{project}", "url": "json://127.0.0.1:9/x", "project": project},
    )
    return Things(
        project=project,
        repo=repo,
        plan=plan,
        schedule=str(schedule["id"]),
        notification=str(notification["id"]),
        job=await make_job(client, repo),
    )


async def make_tokens(client: Client) -> dict[str, dict[str, str]]:
    """Authorization headers per role: admin, and an operator and a viewer of `alpha`."""
    headers = {"admin": auth(ADMIN_TOKEN)}
    for role in ("operator", "viewer"):
        made = await _ok(client, "POST", "/api/tokens", {"name": f"{role}-{OWN}", "role": role, "project": OWN})
        headers[role] = auth(made["token"])
    return headers


async def scheduled_job(js: JetStreamContext, pool: asyncpg.Pool, things: Things) -> str:
    """A job as the scheduler queues it for `things`' schedule (for the calendar)."""
    spec = JobSpec(
        id=ids.new_id(),
        type="check",
        agent="local",
        project=things.project,
        repository_id=things.repo,
        trigger="schedule",
        schedule_id=things.schedule,
        created_at=datetime.now(UTC),
    )
    await advance(js, pool, spec.id, JobQueued(job_id=spec.id, data=spec))
    return spec.id

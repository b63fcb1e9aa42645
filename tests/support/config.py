"""Configuration rows for tests that run without the api."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec

from shared import ids
from shared.events import PlanRef


async def add_repository(
    conn: asyncpg.Connection,
    location: str,
    *,
    agent: str = "local",
    name: str | None = None,
) -> str:
    repo_id = ids.new_id()
    await conn.execute(
        "INSERT INTO repositories (id, name, location, agent) VALUES ($1, $2, $3, $4)",
        repo_id,
        name or f"repo-{repo_id[-6:]}",
        location,
        agent,
    )
    return repo_id


async def add_plan(conn: asyncpg.Connection, repository_id: str, paths: list[str], **kw: Any) -> str:
    plan_id = ids.new_id()
    plan = PlanRef(
        id=plan_id,
        name=kw.pop("name", f"plan-{plan_id[-6:]}"),
        repository_id=repository_id,
        paths=paths,
        **kw,
    )
    await conn.execute(
        "INSERT INTO plans (id, name, repository_id, config) VALUES ($1, $2, $3, $4)",
        plan_id,
        plan.name,
        repository_id,
        msgspec.to_builtins(plan),
    )
    return plan_id

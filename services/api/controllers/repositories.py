"""Repositories: where archives go. The passphrase is stored, never returned (`has_passphrase`)."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec
from litestar import Controller, delete, get, post, put

from services.api import queries, scope
from services.api.auth import READ, WRITE, Principal, project_scope
from services.api.controllers import safe_id
from services.api.errors import Conflict, NotFound
from services.api.runtime import Runtime
from services.api.schemas import (
    Archive,
    ArchiveList,
    Repository,
    RepositoryCreate,
    RepositoryList,
    RepositoryUpdate,
)
from shared import ids


def _repository(row: asyncpg.Record) -> Repository:
    return Repository(**dict(row))


async def _get(rt: Runtime, repo_id: str, principal: Principal) -> Repository:
    """The repository, or 404 when it is absent or of a project `principal` does not see."""
    row = await queries.repository(rt.pool, safe_id(repo_id, "repository"))
    if row is None:
        raise NotFound(f"no repository {repo_id}")
    scope.require_visible(principal, row["project"], "repository", repo_id)
    return _repository(row)


def _duplicate(name: str, project: str) -> Conflict:
    return Conflict(f"a repository named {name!r} already exists in project {project!r}", "name")


class RepositoryController(Controller):
    path = "/api/repositories"
    tags = ("repositories",)

    @post(opt={"permission": WRITE})
    async def create(self, rt: Runtime, principal: Principal, data: RepositoryCreate) -> Repository:
        scope.require_own_project(principal, data.project)
        repo_id = ids.new_id()
        try:
            await queries.insert_repository(
                rt.pool,
                repo_id=repo_id,
                project=data.project,
                name=data.name,
                location=data.location,
                agent=data.agent,
                passphrase=data.passphrase,
            )
        except asyncpg.UniqueViolationError:
            raise _duplicate(data.name, data.project) from None
        return await _get(rt, repo_id, principal)

    @get(opt={"permission": READ})
    async def list_all(self, rt: Runtime, principal: Principal) -> RepositoryList:
        rows = await queries.repositories(rt.pool, project_scope(principal))
        return RepositoryList(items=[_repository(r) for r in rows])

    @get("/{repo_id:str}", opt={"permission": READ})
    async def get_one(self, rt: Runtime, principal: Principal, repo_id: str) -> Repository:
        return await _get(rt, repo_id, principal)

    @put("/{repo_id:str}", opt={"permission": WRITE})
    async def update(self, rt: Runtime, principal: Principal, repo_id: str, data: RepositoryUpdate) -> Repository:
        current = await _get(rt, repo_id, principal)
        changes: dict[str, Any] = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not msgspec.UNSET}
        try:
            await queries.update_repository(rt.pool, repo_id, changes)
        except asyncpg.UniqueViolationError:
            raise _duplicate(str(changes.get("name")), current.project) from None
        return await _get(rt, repo_id, principal)

    @delete("/{repo_id:str}", opt={"permission": WRITE})
    async def remove(self, rt: Runtime, principal: Principal, repo_id: str) -> None:
        await _get(rt, repo_id, principal)
        try:
            async with queries.connection(rt.pool) as conn, conn.transaction():
                # Locked first, so a schedule being created for it is seen or finds it gone.
                if not await queries.lock_repository(conn, repo_id, exclusive=True):
                    raise NotFound(f"no repository {repo_id}")
                using = await queries.plans_using(conn, repo_id)
                if using:
                    names = ", ".join(map(repr, using))
                    raise Conflict(f"repository {repo_id} is used by plans {names}: delete them first")
                scheduled = await queries.schedules_using_repository(conn, repo_id)
                if scheduled:
                    names = ", ".join(map(repr, scheduled))
                    raise Conflict(f"repository {repo_id} is used by schedules {names}: delete them first")
                await queries.delete_repository(conn, repo_id)
        except asyncpg.ForeignKeyViolationError:  # a plan appeared in between
            raise Conflict(f"repository {repo_id} is used by a plan: delete it first") from None

    @get("/{repo_id:str}/archives", opt={"permission": READ})
    async def archives(self, rt: Runtime, principal: Principal, repo_id: str) -> ArchiveList:
        await _get(rt, repo_id, principal)
        rows = await queries.archives(rt.pool, repo_id)
        return ArchiveList(items=[Archive(**dict(r)) for r in rows])

"""Plans (backup profiles). A plan is stored as the PlanRef jobs snapshot (`plans.config`)."""

from __future__ import annotations

import posixpath
from typing import Any

import asyncpg
import msgspec
from litestar import Controller, delete, get, post, put

from services.api import patches, plan_databases, queries, scope
from services.api.auth import READ, WRITE, Principal, project_scope
from services.api.controllers import safe_id
from services.api.errors import Conflict, Invalid, NotFound
from services.api.patches import PlanPatch
from services.api.runtime import Runtime
from services.api.schemas import Plan, PlanCreate, PlanList
from shared import ids
from shared.events import PlanRef
from shared.submit import field_of

READ_ONLY = frozenset({"id", "project", "created_at", "updated_at"})


def _plan(row: asyncpg.Record) -> Plan:
    fields = dict(row["config"]) | {
        "id": row["id"],
        "name": row["name"],
        "repository_id": row["repository_id"],
        "project": row["project"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }
    return msgspec.convert(fields, Plan)


async def _row(rt: Runtime, plan_id: str, principal: Principal) -> asyncpg.Record:
    """The plan, or 404 when it is absent or of a project `principal` does not see."""
    row = await queries.plan(rt.pool, safe_id(plan_id, "plan"))
    if row is None:
        raise NotFound(f"no plan {plan_id}")
    scope.require_visible(principal, row["project"], "plan", plan_id)
    return row


def _check(body: PlanCreate) -> None:
    """What the schema cannot say; Invalid names the field."""
    if not body.paths:
        raise Invalid("paths: a plan backs up at least one path", "paths")
    for path in body.paths:
        if not path or not posixpath.isabs(path) or "\x00" in path:
            raise Invalid(f"paths: {path!r} is not an absolute path", "paths")
    if "/" in body.archive_name or "::" in body.archive_name:
        raise Invalid("archive_name must not contain '/' or '::'", "archive_name")
    for field in ("exclude", "pre_scripts", "post_scripts"):
        if any(not item.strip() for item in getattr(body, field)):
            raise Invalid(f"{field}: entries must not be empty", field)
    plan_databases.check(body.databases)


async def _project_of_repository(rt: Runtime, repository_id: str, principal: Principal) -> str:
    """A plan's project is its repository's; one `principal` does not see is answered as absent."""
    repo = await queries.repository(rt.pool, repository_id)
    if repo is None or not scope.sees(principal, repo["project"]):
        raise Invalid(f"repository_id: no repository with id {repository_id!r}", "repository_id")
    return str(repo["project"])


def _config(plan_id: str, body: PlanCreate, with_password: set[str] | None = None) -> dict[str, Any]:
    """The plan as jobs snapshot it; its databases' passwords are not in it (`with_password` says which have one)."""
    ref = msgspec.convert(msgspec.to_builtins(body) | {"id": plan_id}, PlanRef)
    config: dict[str, Any] = msgspec.to_builtins(ref)
    config["databases"] = plan_databases.config(body.databases, with_password or set())
    return config


def _duplicate(name: str, project: str) -> Conflict:
    return Conflict(f"a plan named {name!r} already exists in project {project!r}", "name")


class PlanController(Controller):
    path = "/api/plans"
    tags = ("plans",)

    @post(opt={"permission": WRITE, "conflict": True})
    async def create(self, rt: Runtime, principal: Principal, data: PlanCreate) -> Plan:
        _check(data)
        project = await _project_of_repository(rt, data.repository_id, principal)
        plan_id = ids.new_id()
        try:
            async with queries.connection(rt.pool) as conn, conn.transaction():
                await queries.insert_plan(
                    conn,
                    plan_id=plan_id,
                    project=project,
                    name=data.name,
                    repository_id=data.repository_id,
                    config=_config(plan_id, data, plan_databases.kept(data.databases, set())),
                )
                await plan_databases.write(rt, conn, plan_id, data.databases)
        except asyncpg.UniqueViolationError:
            raise _duplicate(data.name, project) from None
        except asyncpg.ForeignKeyViolationError:  # the repository went in between
            raise Invalid(f"repository_id: no repository with id {data.repository_id!r}", "repository_id") from None
        return _plan(await _row(rt, plan_id, principal))

    @get(opt={"permission": READ})
    async def list_all(self, rt: Runtime, principal: Principal) -> PlanList:
        return PlanList(items=[_plan(r) for r in await queries.plans(rt.pool, project_scope(principal))])

    @get("/{plan_id:str}", opt={"permission": READ})
    async def get_one(self, rt: Runtime, principal: Principal, plan_id: str) -> Plan:
        return _plan(await _row(rt, plan_id, principal))

    @put("/{plan_id:str}", opt={"permission": WRITE, "conflict": True})
    async def update(self, rt: Runtime, principal: Principal, plan_id: str, data: PlanPatch) -> Plan:
        """Change the fields given; the others keep their values."""
        row = await _row(rt, plan_id, principal)
        current = {k: v for k, v in row["config"].items() if k != "id"}
        # A plan as GET shows it may be sent back whole: its read-only fields are ignored.
        given = {k: v for k, v in patches.given(data).items() if k not in READ_ONLY}
        try:
            body = msgspec.convert(current | given, PlanCreate)
        except msgspec.ValidationError as e:
            field = field_of(e)
            raise Invalid(f"{field}: {str(e).split(' - at ')[0]}", field) from e
        _check(body)
        project = await _project_of_repository(rt, body.repository_id, principal)
        try:
            async with queries.connection(rt.pool) as conn, conn.transaction():
                await queries.lock_plan(conn, plan_id, exclusive=True)  # two PUTs: one after the other
                with_password = plan_databases.kept(body.databases, await plan_databases.stored(conn, plan_id))
                await queries.update_plan(
                    conn,
                    plan_id,
                    project=project,
                    name=body.name,
                    repository_id=body.repository_id,
                    config=_config(plan_id, body, with_password),
                )
                await plan_databases.write(rt, conn, plan_id, body.databases)
        except asyncpg.UniqueViolationError:
            raise _duplicate(body.name, project) from None
        except asyncpg.ForeignKeyViolationError:
            raise Invalid(f"repository_id: no repository with id {body.repository_id!r}", "repository_id") from None
        return _plan(await _row(rt, plan_id, principal))

    @delete("/{plan_id:str}", opt={"permission": WRITE, "conflict": True})
    async def remove(self, rt: Runtime, principal: Principal, plan_id: str) -> None:
        await _row(rt, plan_id, principal)
        async with queries.connection(rt.pool) as conn, conn.transaction():
            # Locked first: a schedule being created for this plan either commits before
            # the check below sees it, or finds the plan gone.
            if not await queries.lock_plan(conn, plan_id, exclusive=True):
                raise NotFound(f"no plan {plan_id}")
            using = await queries.schedules_using_plan(conn, plan_id)
            if using:
                raise Conflict(f"plan {plan_id} is used by schedules {', '.join(map(repr, using))}: delete them first")
            await queries.delete_plan(conn, plan_id)

"""Repositories: where archives go. The passphrase is stored encrypted, never returned (`has_passphrase`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import msgspec
from litestar import Controller, delete, get, post, put

from services.api import consistency, queries, scope
from services.api.auth import READ, WRITE, Principal, project_scope
from services.api.controllers import safe_id
from services.api.errors import Conflict, NotFound, Unavailable
from services.api.runtime import Runtime
from services.api.schemas import (
    Archive,
    ArchiveList,
    Repository,
    RepositoryCreate,
    RepositoryList,
    RepositoryStats,
    RepositoryUpdate,
    StatsPoint,
    Verification,
    VerificationReport,
)
from shared import ids, insight, secretrows, verification
from shared.events import utcnow
from shared.exceptions import ConfigError


def _repository(row: asyncpg.Record) -> Repository:
    return Repository(**dict(row))


async def _get(rt: Runtime, repo_id: str, principal: Principal) -> Repository:
    """The repository, or 404 when it is absent or of a project `principal` does not see."""
    row = await queries.repository(rt.pool, safe_id(repo_id, "repository"))
    if row is None:
        raise NotFound(f"no repository {repo_id}")
    scope.require_visible(principal, row["project"], "repository", repo_id)
    return _repository(row)


async def _sealed(rt: Runtime, conn: asyncpg.Connection, repo_id: str, passphrase: str) -> bytes:
    """The passphrase encrypted for this repository's row, in `conn`'s transaction (see secretrows)."""
    await secretrows.lock_for_sealing(conn)
    try:
        return secretrows.seal(rt.secret_keys, secretrows.PASSPHRASE, repo_id, passphrase)
    except ConfigError as e:  # the key file went missing or bad: say so, and store nothing
        raise Unavailable(f"the passphrase cannot be stored: {e}") from None


# How far back the stats' history goes (one point per day).
HISTORY_DAYS = 365


def _int(figures: dict[str, Any], key: str) -> int | None:
    value = figures.get(key)
    return value if isinstance(value, int) else None


def _stats(latest: dict[str, Any], days: list[asyncpg.Record], now: datetime) -> RepositoryStats:
    """The answer of GET .../stats, from the latest figures and the per-day history (shared/insight.py)."""
    history = [
        StatsPoint(
            at=d["at"],
            archives=_int(d["figures"], "archives"),
            deduplicated_size=_int(d["figures"], "deduplicated_size"),
            disk_used=_int(d["figures"], "disk_used"),
        )
        for d in days
    ]
    used = [(p.at, p.disk_used) for p in history if p.disk_used is not None]
    return RepositoryStats(
        archives=_int(latest, "archives"),
        original_size=_int(latest, "original_size"),
        compressed_size=_int(latest, "compressed_size"),
        deduplicated_size=_int(latest, "deduplicated_size"),
        compression_ratio=insight.ratio(latest.get("original_size"), latest.get("compressed_size")),
        dedup_ratio=insight.ratio(latest.get("original_size"), latest.get("deduplicated_size")),
        disk_used=_int(latest, "disk_used"),
        disk_free=_int(latest, "disk_free"),
        projected_full_at=insight.projected_full_at(used, _int(latest, "disk_total"), now),
        history=history,
    )


def _duplicate(name: str, project: str) -> Conflict:
    return Conflict(f"a repository named {name!r} already exists in project {project!r}", "name")


class RepositoryController(Controller):
    path = "/api/repositories"
    tags = ("repositories",)

    @post(opt={"permission": WRITE, "conflict": True})
    async def create(self, rt: Runtime, principal: Principal, data: RepositoryCreate) -> Repository:
        scope.require_own_project(principal, data.project)
        repo_id = ids.new_id()
        try:
            async with queries.connection(rt.pool) as conn, conn.transaction():
                sealed = None if data.passphrase is None else await _sealed(rt, conn, repo_id, data.passphrase)
                await queries.insert_repository(
                    conn,
                    repo_id=repo_id,
                    project=data.project,
                    name=data.name,
                    location=data.location,
                    agent=data.agent,
                    passphrase=sealed,
                    storage_low_percent=data.storage_low_percent,
                    keep_verified_days=data.keep_verified_days,
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

    @put("/{repo_id:str}", opt={"permission": WRITE, "conflict": True})
    async def update(self, rt: Runtime, principal: Principal, repo_id: str, data: RepositoryUpdate) -> Repository:
        current = await _get(rt, repo_id, principal)
        changes: dict[str, Any] = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not msgspec.UNSET}
        try:
            async with queries.connection(rt.pool) as conn, conn.transaction():
                if "passphrase" in changes:
                    passphrase = changes.pop("passphrase")
                    sealed = None if passphrase is None else await _sealed(rt, conn, repo_id, passphrase)
                    changes["passphrase_enc"] = sealed
                await queries.update_repository(conn, repo_id, changes)
        except asyncpg.UniqueViolationError:
            raise _duplicate(str(changes.get("name")), current.project) from None
        return await _get(rt, repo_id, principal)

    @delete("/{repo_id:str}", opt={"permission": WRITE, "conflict": True})
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

    @get("/{repo_id:str}/stats", opt={"permission": READ})
    async def stats(self, rt: Runtime, principal: Principal, repo_id: str) -> RepositoryStats:
        """Usage, dedup and compression ratios and a projected fill date, as the repository's jobs measured them."""
        await _get(rt, repo_id, principal)
        latest = await queries.repository_stats(rt.pool, repo_id)
        days = await queries.repository_stats_days(rt.pool, repo_id, HISTORY_DAYS)
        return _stats(dict(latest["figures"]) if latest else {}, days, utcnow())

    @get("/{repo_id:str}/archives", opt={"permission": READ})
    async def archives(self, rt: Runtime, principal: Principal, repo_id: str) -> ArchiveList:
        await _get(rt, repo_id, principal)
        rows = await queries.archives(rt.pool, repo_id)
        return ArchiveList(items=[Archive(**dict(r)) for r in rows])

    @get("/{repo_id:str}/verification", opt={"permission": READ})
    async def verification(self, rt: Runtime, principal: Principal, repo_id: str) -> VerificationReport:
        """Each archive's last check result; STALE past keep_verified_days, UNVERIFIED when never checked."""
        await _get(rt, repo_id, principal)
        # Read after a check ended: the report holds the check its caller just saw end.
        await consistency.wait_for_projection(rt)
        async with queries.connection(rt.pool) as conn:
            items = await verification.load_report(conn, repo_id, utcnow())
        return VerificationReport(items=[Verification(**msgspec.structs.asdict(i)) for i in items])

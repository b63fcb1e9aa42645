"""Schedules: a cron expression in a time zone or an interval, and the job (a POST /api/jobs body) it queues.

A schedule is validated as a whole, job included, when it is written: one whose
job could never be queued is refused then, naming the field (`job.plan_id`),
rather than failing every night. The scheduler hears every change at once
(a trigger on the table notifies it).
"""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import msgspec
from litestar import Controller, delete, get, post, put

from services.api import patches, queries, schedule_queries, scope
from services.api.auth import READ, WRITE, Principal, project_scope
from services.api.controllers import safe_id
from services.api.errors import Invalid, NotFound
from services.api.job_bodies import as_request
from services.api.patches import SchedulePatch
from services.api.runtime import Runtime
from services.api.schedule_queries import ScheduleRow
from services.api.schemas import LastRun, Schedule, ScheduleCreate, ScheduleList
from shared import cron, ids
from shared.submit import InvalidRequest, Origin, build_spec, field_of, parse_request, target_password
from shared.timing import Timing

NEXT_RUNS = 5
# Fields an answer carries that a PUT may send back but cannot set.
READ_ONLY = frozenset({"id", "project", "next_runs", "last_run", "created_at", "updated_at"})


def timing_of(row: asyncpg.Record) -> Timing:
    return Timing(cron=row["cron"], timezone=row["timezone"], interval_s=row["interval_s"], anchor=row["created_at"])


def next_runs(timing: Timing, enabled: bool, now: datetime, n: int = NEXT_RUNS) -> list[datetime]:
    """The next `n` fire times after `now` (UTC); none while disabled."""
    if not enabled:
        return []
    try:
        return timing.fires_after(now, n)
    except ValueError:  # stored before a croniter upgrade changed its mind: show no runs, never a 500
        return []


def _schedule(row: asyncpg.Record, now: datetime) -> Schedule:
    last_run = None
    if row["last_fire_at"] is not None:
        last_run = LastRun(at=row["last_fire_at"], job_id=row["last_job_id"], status=row["last_job_status"])
    return Schedule(
        id=row["id"],
        project=row["project"],
        name=row["name"],
        cron=row["cron"] or None,
        timezone=row["timezone"],
        interval_s=row["interval_s"],
        enabled=row["enabled"],
        catch_up_s=row["catch_up_s"],
        job=row["job"],
        next_runs=next_runs(timing_of(row), row["enabled"], now),
        last_run=last_run,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _check_timing(body: ScheduleCreate, now: datetime) -> None:
    if body.cron is not None and body.interval_s is not None:
        raise Invalid("interval_s: give a cron expression or an interval_s, not both", "interval_s")
    if body.interval_s is not None:
        return
    if body.cron is None:
        raise Invalid("cron: a schedule needs a cron expression or an interval_s (seconds)", "cron")
    try:
        cron.validate(body.cron, body.timezone)
    except cron.BadSchedule as e:
        raise Invalid(e.detail, e.field) from None
    try:
        cron.fires_after(body.cron, body.timezone, now, 1)
    except ValueError:  # valid syntax for a date that never comes (`0 0 30 2 *`)
        raise Invalid(f"cron: {body.cron!r} never fires", "cron") from None


def _job_error(e: InvalidRequest) -> Invalid:
    """A job body's error with its field under `job.`."""
    if e.field in ("", "body"):
        return Invalid(f"job: {e.detail}", "job")
    field = f"job.{e.field}"
    detail = f"job.{e.detail}" if e.detail.startswith(e.field) else f"{field}: {e.detail}"
    return Invalid(detail, field)


async def _validated(conn: asyncpg.Connection, body: ScheduleCreate, principal: Principal) -> ScheduleRow:
    """The row to store, once the whole schedule checks out; its project is its job's.

    Run inside the writing transaction: the job's plan or repository is share-locked,
    so it cannot be deleted between this check and the commit.
    """
    _check_timing(body, datetime.now(UTC))
    job = as_request(body.job)
    try:
        req = parse_request(job)
        spec = await build_spec(conn, req, Origin(trigger="schedule"))
    except InvalidRequest as e:
        raise _job_error(e) from None
    if target_password(req) is not None:  # a schedule's job is stored as given: no secret in it
        raise Invalid(
            "job.options.target.password: a schedule cannot keep a password; restore by hand, or use a target "
            "user that needs none (a .pgpass or socket auth on the agent)",
            "job.options.target.password",
        )
    if req.plan_id and not await queries.lock_plan(conn, req.plan_id):
        raise Invalid(f"job.plan_id: no plan with id {req.plan_id!r}", "job.plan_id")
    if spec.repository_id and not await queries.lock_repository(conn, spec.repository_id):
        raise Invalid(f"job.repository_id: no repository with id {spec.repository_id!r}", "job.repository_id")
    project = spec.project
    if not scope.sees(principal, project):  # answered as if absent
        if req.plan_id:
            raise Invalid(f"job.plan_id: no plan with id {req.plan_id!r}", "job.plan_id")
        if spec.repository_id:
            raise Invalid(f"job.repository_id: no repository with id {spec.repository_id!r}", "job.repository_id")
        project = project_scope(principal) or project  # a ping belongs to no repository: the token's project
    return ScheduleRow(
        project=project,
        name=body.name,
        cron=body.cron or "",
        timezone=body.timezone,
        interval_s=body.interval_s,
        enabled=body.enabled,
        catch_up_s=body.catch_up_s,
        job=job,  # as given: the scheduler submits it as a POST /api/jobs body
    )


async def _row(rt: Runtime, schedule_id: str, principal: Principal) -> asyncpg.Record:
    """The schedule, or 404 when it is absent or of a project `principal` does not see."""
    row = await schedule_queries.schedule(rt.pool, safe_id(schedule_id, "schedule"))
    if row is None:
        raise NotFound(f"no schedule {schedule_id}")
    scope.require_visible(principal, row["project"], "schedule", schedule_id)
    return row


class ScheduleController(Controller):
    path = "/api/schedules"
    tags = ("schedules",)

    @post(opt={"permission": WRITE})
    async def create(self, rt: Runtime, principal: Principal, data: ScheduleCreate) -> Schedule:
        """422 naming the field for a bad `cron`, `interval_s`, `timezone` or job (`job.plan_id`, …)."""
        schedule_id = ids.new_id()
        async with queries.connection(rt.pool) as conn, conn.transaction():
            await schedule_queries.insert_schedule(conn, schedule_id, await _validated(conn, data, principal))
        return _schedule(await _row(rt, schedule_id, principal), datetime.now(UTC))

    @get(opt={"permission": READ}, cache=False)
    async def list_all(self, rt: Runtime, principal: Principal) -> ScheduleList:
        now = datetime.now(UTC)
        rows = await schedule_queries.schedules(rt.pool, project_scope(principal))
        return ScheduleList(items=[_schedule(r, now) for r in rows])

    @get("/{schedule_id:str}", opt={"permission": READ}, cache=False)
    async def get_one(self, rt: Runtime, principal: Principal, schedule_id: str) -> Schedule:
        return _schedule(await _row(rt, schedule_id, principal), datetime.now(UTC))

    @put("/{schedule_id:str}", opt={"permission": WRITE})
    async def update(self, rt: Runtime, principal: Principal, schedule_id: str, data: SchedulePatch) -> Schedule:
        """Change the fields given (a new `job` replaces the old one whole); validated as a whole."""
        row = await _row(rt, schedule_id, principal)
        current = {k: row[k] for k in ScheduleCreate.__struct_fields__}
        current["cron"] = current["cron"] or None
        # A schedule as GET shows it may be sent back whole: its read-only fields are ignored.
        given = {k: v for k, v in patches.given(data).items() if k not in READ_ONLY}
        # Giving one way of timing replaces the other.
        if given.get("interval_s") is not None and "cron" not in given:
            current["cron"] = None
        if given.get("cron") is not None and "interval_s" not in given:
            current["interval_s"] = None
        try:
            body = msgspec.convert(current | given, ScheduleCreate)
        except msgspec.ValidationError as e:
            field = field_of(e)
            raise Invalid(f"{field}: {str(e).split(' - at ')[0]}", field) from None
        async with queries.connection(rt.pool) as conn, conn.transaction():
            if not await schedule_queries.update_schedule(conn, schedule_id, await _validated(conn, body, principal)):
                raise NotFound(f"no schedule {schedule_id}")
        return _schedule(await _row(rt, schedule_id, principal), datetime.now(UTC))

    @delete("/{schedule_id:str}", opt={"permission": WRITE})
    async def remove(self, rt: Runtime, principal: Principal, schedule_id: str) -> None:
        await _row(rt, schedule_id, principal)
        if not await schedule_queries.delete_schedule(rt.pool, schedule_id):
            raise NotFound(f"no schedule {schedule_id}")

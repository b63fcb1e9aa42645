"""The scheduler's SQL, in one place: schedules it fires, checks it watches, plans it guards."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.scheduler.domain import PlanHealth, WaitingCheck
from shared.db import Conn
from shared.events import JobStatus
from shared.timing import Timing


@dataclass(frozen=True, kw_only=True)
class ScheduleRow:
    id: str
    name: str
    project: str
    timing: Timing
    catch_up_s: float
    job: dict[str, Any]
    last_fire_at: datetime | None
    created_at: datetime
    active_since: datetime | None

    @property
    def since(self) -> datetime:
        """Fire times after this are due: the last one handled, the creation, or the last
        time it was switched on or retimed (fire times from before then are not owed)."""
        since = self.last_fire_at or self.created_at
        if self.active_since is not None and self.active_since > since:
            return self.active_since
        return since


async def enabled_schedules(conn: Conn) -> list[ScheduleRow]:
    rows = await conn.fetch(
        "SELECT id, name, project, cron, timezone, interval_s, catch_up_s, job, last_fire_at, created_at, active_since"
        " FROM schedules WHERE enabled ORDER BY id"
    )
    return [
        ScheduleRow(
            id=r["id"],
            name=r["name"],
            project=r["project"],
            timing=Timing(cron=r["cron"], timezone=r["timezone"], interval_s=r["interval_s"], anchor=r["created_at"]),
            catch_up_s=float(r["catch_up_s"]),
            job=dict(r["job"]),
            last_fire_at=r["last_fire_at"],
            created_at=r["created_at"],
            active_since=r["active_since"],
        )
        for r in rows
    ]


async def record_fire(conn: Conn, schedule_id: str, fire_at: datetime, job_id: str | None) -> None:
    """The latest fire time handled (run, rejected or missed), and the job it queued if any."""
    await conn.execute(
        "UPDATE schedules SET last_fire_at = $2, last_job_id = COALESCE($3, last_job_id)"
        " WHERE id = $1 AND (last_fire_at IS NULL OR last_fire_at < $2)",
        schedule_id,
        fire_at,
        job_id,
    )


async def waiting_checks(conn: Conn, queued_before: datetime) -> list[WaitingCheck]:
    """Scheduled checks not started, queued before `queued_before`, with their repository's activity."""
    rows = await conn.fetch(
        """
        SELECT j.id, j.created_at, j.agent, j.status, j.doc->>'repository_name' AS repository_name,
            (j.doc->>'not_before')::timestamptz AS not_before, (j.doc->>'sent_at')::timestamptz AS sent_at,
            EXISTS (SELECT 1 FROM jobs o WHERE o.repository_id = j.repository_id AND o.id <> j.id
                    AND o.status IN ('sent', 'running')) AS busy,
            (SELECT max(o.finished_at) FROM jobs o WHERE o.repository_id = j.repository_id AND o.id <> j.id
                    AND o.started_at IS NOT NULL) AS last_end
        FROM jobs j
        WHERE j.type = 'check' AND j.trigger = 'schedule' AND j.status IN ('queued', 'sent')
          AND j.created_at <= $1
        ORDER BY j.created_at
        """,
        queued_before,
    )
    return [
        WaitingCheck(
            job_id=r["id"],
            created_at=r["created_at"],
            agent=r["agent"],
            repository_name=r["repository_name"],
            repository_busy=r["busy"],
            repository_last_end=r["last_end"],
            not_before=r["not_before"],
            status=JobStatus(r["status"]),
            sent_at=r["sent_at"],
        )
        for r in rows
    ]


async def guarded_plans(conn: Conn) -> list[PlanHealth]:
    """Plans with a positive `alert_after_s`, each with its last successful backup."""
    rows = await conn.fetch(
        """
        SELECT p.id, p.name, p.project, p.created_at, (p.config->>'alert_after_s')::numeric AS alert_after_s,
               s.id AS last_job, s.finished_at AS last_at
        FROM plans p
        LEFT JOIN LATERAL (
            SELECT j.id, j.finished_at FROM jobs j
            WHERE j.plan_id = p.id AND j.type = 'backup' AND j.status IN ('completed', 'warning')
              AND j.finished_at IS NOT NULL
            ORDER BY j.finished_at DESC LIMIT 1
        ) s ON true
        WHERE jsonb_typeof(p.config->'alert_after_s') = 'number' AND (p.config->>'alert_after_s')::numeric > 0
        ORDER BY p.id
        """
    )
    return [
        PlanHealth(
            plan_id=r["id"],
            name=r["name"],
            project=r["project"],
            created_at=r["created_at"],
            alert_after_s=int(r["alert_after_s"]),
            last_success_at=r["last_at"],
            last_success_job=r["last_job"],
        )
        for r in rows
    ]

"""Schedules: validated whole (cron, zone, the job they queue), with next runs and the last run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from nats.js import JetStreamContext

from shared.events import JobSent, SentData
from tests.api.conftest import Client, advance, make_plan, make_repository, queue_scheduled_job


def _times(values: list[str]) -> list[datetime]:
    return [datetime.fromisoformat(v) for v in values]


def _daily(hour: int, minute: int, tz: str, after: datetime, n: int) -> list[datetime]:
    """The next `n` local wall times hour:minute in `tz` after `after`, in UTC (no DST edge at this hour)."""
    zone = ZoneInfo(tz)
    day = after.astimezone(zone).date()
    out: list[datetime] = []
    while len(out) < n:
        t = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone).astimezone(UTC)
        if t > after:
            out.append(t)
        day += timedelta(days=1)
    return out


async def test_schedule_crud_with_next_runs_in_its_time_zone(client: Client, pool: asyncpg.Pool) -> None:
    repo = await make_repository(client)
    plan = await make_plan(client, repo["id"])
    job = {"type": "backup", "plan_id": plan["id"]}
    before = datetime.now(UTC)
    r = await client.post(
        "/api/schedules", json={"name": "nightly", "cron": "15 4 * * *", "timezone": "Europe/Berlin", "job": job}
    )
    assert r.status_code == 201, r.text
    s = r.json()
    assert s["name"] == "nightly" and s["project"] == "default" and s["job"] == job
    assert s["enabled"] is True and s["catch_up_s"] == 3600 and s["last_run"] is None
    # 04:15 in Berlin is 03:15 UTC in winter, 02:15 in summer: never 04:15 UTC.
    assert _times(s["next_runs"]) == _daily(4, 15, "Europe/Berlin", before, 5)
    assert all(v.endswith("Z") for v in s["next_runs"])
    assert {t.hour for t in _times(s["next_runs"])} <= {2, 3}

    assert [x["id"] for x in (await client.get("/api/schedules")).json()["items"]] == [s["id"]]
    got = (await client.get(f"/api/schedules/{s['id']}")).json()
    assert got == s

    r = await client.put(f"/api/schedules/{s['id']}", json={"enabled": False, "catch_up_s": 0})
    assert r.status_code == 200, r.text
    changed = r.json()
    assert changed["enabled"] is False and changed["next_runs"] == [] and changed["catch_up_s"] == 0
    assert changed["cron"] == "15 4 * * *" and changed["job"] == job and changed["name"] == "nightly"

    # The answer sent back whole, with a change: read-only fields are ignored.
    r = await client.put(f"/api/schedules/{s['id']}", json=changed | {"enabled": True, "timezone": "UTC"})
    assert r.status_code == 200, r.text
    assert _times(r.json()["next_runs"])[0].hour == 4

    assert (await client.delete(f"/api/plans/{plan['id']}")).status_code == 409  # a schedule uses it
    assert (await client.delete(f"/api/repositories/{repo['id']}")).status_code == 409
    assert (await client.delete(f"/api/schedules/{s['id']}")).status_code == 204
    assert (await client.get(f"/api/schedules/{s['id']}")).status_code == 404
    assert (await client.delete(f"/api/schedules/{s['id']}")).status_code == 404
    assert (await client.delete(f"/api/plans/{plan['id']}")).status_code == 204
    assert await pool.fetchval("SELECT count(*) FROM schedules") == 0

    # A repository a scheduled job names stays until the schedule goes.
    check = {"name": "weekly check", "cron": "0 6 * * 0", "job": {"type": "check", "repository_id": repo["id"]}}
    s = (await client.post("/api/schedules", json=check)).json()
    r = await client.delete(f"/api/repositories/{repo['id']}")
    assert r.status_code == 409 and "weekly check" in r.json()["detail"]
    assert (await client.delete(f"/api/schedules/{s['id']}")).status_code == 204
    assert (await client.delete(f"/api/repositories/{repo['id']}")).status_code == 204


async def test_bad_schedules_name_the_field_and_store_nothing(client: Client, pool: asyncpg.Pool) -> None:
    repo = await make_repository(client)
    plan = await make_plan(client, repo["id"])
    good: dict[str, Any] = {"name": "s", "cron": "0 3 * * *", "job": {"type": "backup", "plan_id": plan["id"]}}
    cases: list[tuple[dict[str, Any], str, int | None]] = [
        ({"cron": "every night"}, "cron", 422),
        ({"cron": "0 0 30 2 *"}, "cron", 422),  # valid syntax, never fires
        ({"timezone": "Mars/Olympus_Mons"}, "timezone", 422),
        ({"job": {"type": "backup", "plan_id": "missing"}}, "job.plan_id", 422),
        ({"job": {"type": "backup"}}, "job.plan_id", 400),  # the body's shape: 400
        ({"job": {"type": "explode", "plan_id": plan["id"]}}, "job.type", 400),
        ({"job": {"plan_id": plan["id"]}}, "job.type", 400),
        ({"job": {"type": "check", "repository_id": "missing"}}, "job.repository_id", 422),
        (
            {
                "job": {
                    "type": "restore",
                    "repository_id": repo["id"],
                    "archive": "a",
                    "options": {"destination": "relative/dir"},
                }
            },
            "job.options.destination",
            422,
        ),
        ({"job": {"type": "check", "repository_id": repo["id"], "priority": "high"}}, "job.priority", 400),
        ({"name": ""}, "name", None),
        ({"catch_up_s": -1}, "catch_up_s", None),
        ({"colour": "red"}, "colour", None),
        ({"cron": None}, "cron", 422),  # neither cron nor interval_s
        ({"interval_s": 3600}, "interval_s", 422),  # both
        ({"cron": None, "interval_s": 0}, "interval_s", None),
    ]
    for change, field, status in cases:
        r = await client.post("/api/schedules", json=good | change)
        assert r.status_code == status if status else r.status_code in (400, 422), (change, r.text)
        assert r.json()["field"] == field, (change, r.json())
        assert r.json()["detail"], change
    assert await pool.fetchval("SELECT count(*) FROM schedules") == 0

    s = (await client.post("/api/schedules", json=good)).json()
    for change, field, status in cases[:4]:
        r = await client.put(f"/api/schedules/{s['id']}", json=change)
        assert r.status_code == status and r.json()["field"] == field, (change, r.text)
    r = await client.put(f"/api/schedules/{s['id']}", json={"catch_up_s": "soon"})
    assert r.status_code == 400 and r.json()["field"] == "catch_up_s"  # a wrong type: the body's shape
    assert (await client.get(f"/api/schedules/{s['id']}")).json() == s  # nothing changed
    assert (await client.put("/api/schedules/nope", json={})).status_code == 404


async def test_last_run_shows_its_jobs_status(client: Client, js: JetStreamContext, pool: asyncpg.Pool) -> None:
    s = (
        await client.post(
            "/api/schedules", json={"name": "ping", "cron": "*/5 * * * *", "job": {"type": "ping", "agent": "local"}}
        )
    ).json()
    job = await queue_scheduled_job(js, pool, s["id"])
    fired = datetime.now(UTC).replace(microsecond=0)
    # What the scheduler writes after it queued the job.
    await pool.execute("UPDATE schedules SET last_fire_at = $2, last_job_id = $3 WHERE id = $1", s["id"], fired, job.id)
    last = (await client.get(f"/api/schedules/{s['id']}")).json()["last_run"]
    assert last == {"at": fired.isoformat().replace("+00:00", "Z"), "job_id": job.id, "status": "queued"}

    await advance(js, pool, job.id, JobSent(job_id=job.id, data=SentData(agent="local")))
    items = (await client.get("/api/schedules")).json()["items"]
    assert items[0]["last_run"]["status"] == "sent"

    await pool.execute("DELETE FROM jobs")
    assert (await client.get(f"/api/schedules/{s['id']}")).json()["last_run"]["status"] is None


async def test_an_interval_schedule_fires_every_interval_from_its_creation(client: Client) -> None:
    repo = await make_repository(client)
    week = 7 * 24 * 3600
    check = {"name": "weekly check", "interval_s": week, "job": {"type": "check", "repository_id": repo["id"]}}
    r = await client.post("/api/schedules", json=check)
    assert r.status_code == 201, r.text
    s = r.json()
    assert s["cron"] is None and s["interval_s"] == week
    created = datetime.fromisoformat(s["created_at"])
    # Absolute seconds from the creation: a DST change in between moves nothing.
    assert _times(s["next_runs"]) == [created + timedelta(seconds=week * k) for k in range(1, 6)]

    # Giving a cron replaces the interval, and the other way round.
    r = await client.put(f"/api/schedules/{s['id']}", json={"cron": "0 6 * * 0"})
    assert r.status_code == 200, r.text
    assert r.json()["interval_s"] is None and r.json()["cron"] == "0 6 * * 0"
    assert all(t.hour == 6 and t.weekday() == 6 for t in _times(r.json()["next_runs"]))
    r = await client.put(f"/api/schedules/{s['id']}", json={"interval_s": 3600})
    assert r.status_code == 200, r.text
    assert r.json()["cron"] is None and _times(r.json()["next_runs"])[1] - _times(r.json()["next_runs"])[0] == (
        timedelta(hours=1)
    )
    r = await client.put(f"/api/schedules/{s['id']}", json={"interval_s": 60, "cron": "0 6 * * 0"})
    assert r.status_code == 422 and r.json()["field"] == "interval_s"

    r = await client.get(f"/api/calendar?to={(created + timedelta(hours=3, minutes=30)).isoformat()}")
    fires = [i for i in r.json()["items"] if i.get("schedule_id") == s["id"] and i["kind"] == "fire"]
    assert [datetime.fromisoformat(f["at"]) for f in fires] == [created + timedelta(hours=k) for k in (1, 2, 3)]

"""What the dashboard and agents pages read: wait/run percentiles per day and type, and per
agent its borgflow version and how many of its jobs are queued."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import quote

import asyncpg
from nats.js import JetStreamContext

from services.api.controllers import calendar
from shared.events import JobCancelled, JobCompleted, JobFailed, JobSent, JobStarted, SentData, StartedData
from tests.api.conftest import Client, advance, make_repository, queue_scheduled_job


async def test_wait_and_run_percentiles_per_day_and_type(
    client: Client, pool: asyncpg.Pool, js: JetStreamContext
) -> None:
    repo = await make_repository(client)
    for wait, run in ((2, 10), (4, 20), (6, 30)):
        job = (await client.post("/api/jobs", json={"type": "check", "repository_id": repo["id"]})).json()
        created = datetime.fromisoformat(job["created_at"])
        started = created + timedelta(seconds=wait)
        outcome = JobFailed if wait == 6 else JobCompleted  # failures count too: they waited and ran
        await advance(
            js,
            pool,
            job["id"],
            JobSent(job_id=job["id"], data=SentData(agent="local")),
            JobStarted(job_id=job["id"], data=StartedData(agent="local"), at=started),
            outcome(job_id=job["id"], at=started + timedelta(seconds=run)),
        )
    never = (await client.post("/api/jobs", json={"type": "compact", "repository_id": repo["id"]})).json()["id"]
    await advance(js, pool, never, JobCancelled(job_id=never))  # never started: no wait, no run time

    r = await client.get("/api/timings?days=1")
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert len(items) == 1, items
    day = items[0]
    assert day["type"] == "check" and day["jobs"] == 3
    assert (day["wait_p50_s"], day["run_p50_s"]) == (4.0, 20.0)
    # percentile_cont: 95 % of the way from the first to the third value, interpolated.
    assert abs(day["wait_p95_s"] - 5.8) < 0.01 and abs(day["run_p95_s"] - 29.0) < 0.01
    assert (await client.get("/api/timings")).json()["items"] == items  # 14 days by default


async def test_timings_bad_input_and_auth(client: Client) -> None:
    for days in ("0", "91", "-3", "abc"):
        r = await client.get(f"/api/timings?days={days}")
        assert r.status_code == 400, (days, r.text)
        assert r.json()["field"] == "days", r.text
    client.headers.pop("Authorization")
    assert (await client.get("/api/timings")).status_code == 401


async def test_agents_say_their_borgflow_version_and_queued_jobs(
    client: Client, pool: asyncpg.Pool, js: JetStreamContext
) -> None:
    await pool.execute(
        "INSERT INTO agents (name, host, last_seen, borg_version, borgflow_version, slots, interval_s) VALUES"
        " ('local', 'box', now() - interval '1 hour', '1.4.1', '0.9.0', 1, 5),"
        " ('web-1', 'web', now(), '1.4.1', NULL, 1, 5)"
    )
    repo = await make_repository(client)
    for _ in range(2):
        assert (await client.post("/api/jobs", json={"type": "check", "repository_id": repo["id"]})).status_code == 201
    by_name = {a["name"]: a for a in (await client.get("/api/agents")).json()["items"]}
    assert by_name["local"]["borgflow_version"] == "0.9.0" and by_name["local"]["queued"] == 2
    assert by_name["local"]["online"] is False  # offline, holding two jobs: the page warns
    assert by_name["web-1"]["borgflow_version"] is None and by_name["web-1"]["queued"] == 0


async def test_the_calendar_names_missed_runs(client: Client, pool: asyncpg.Pool, js: JetStreamContext) -> None:
    body = {"name": "hourly", "cron": "0 * * * *", "job": {"type": "ping", "agent": "local"}}
    hourly = (await client.post("/api/schedules", json=body)).json()
    now = datetime.now(UTC)
    # As if made five hours ago; it queued a job after one of its fires only.
    await pool.execute(
        "UPDATE schedules SET created_at = $2, updated_at = $2 WHERE id = $1", hourly["id"], now - timedelta(hours=5)
    )
    hour = now.replace(minute=0, second=0, microsecond=0)
    fires = [
        hour - timedelta(hours=h) for h in range(4, -1, -1) if hour - timedelta(hours=h) <= now - timedelta(minutes=2)
    ]
    ran = fires[1]
    await queue_scheduled_job(js, pool, hourly["id"], created_at=ran + timedelta(seconds=30))

    since, until = now - timedelta(hours=6), now + timedelta(hours=2)
    path = f"/api/calendar?from={quote(since.isoformat())}&to={quote(until.isoformat())}"
    plain = (await client.get(path)).json()["items"]
    assert "missed" not in {i["kind"] for i in plain}  # only when asked
    items = (await client.get(path + "&missed=true")).json()["items"]
    missed = [datetime.fromisoformat(i["at"]) for i in items if i["kind"] == "missed"]
    assert missed == [f for f in fires if f != ran], items
    assert {i["schedule_name"] for i in items if i["kind"] == "missed"} == {"hourly"}
    assert [i["kind"] for i in items if i["kind"] != "fire"].count("job") == 1
    r = await client.get(path + "&missed=maybe")
    assert r.status_code == 400 and r.json()["field"] == "missed", r.text


async def test_the_new_pages_load_without_a_token_and_link_each_other(client: Client) -> None:
    client.headers.pop("Authorization")
    pages = {"/dashboard": {"calendar", "recent-failures"}, "/agents": set(), "/settings": {"settings-form"}}
    for path, testids in pages.items():
        r = await client.get(path)
        assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8", path
        assert testids <= set(re.findall(r'data-testid="([^"]+)"', r.text)), path
        assert "script-src 'self'" in r.headers["content-security-policy"]
        for other in ("/queue", "/dashboard", "/agents", "/settings"):
            assert f'href="{other}"' in r.text, (path, other)
    for asset in ("charts.js", "dashboard.js", "agents.js", "settings.js"):
        r = await client.get(f"/static/{asset}")
        assert r.status_code == 200 and "use strict" in r.text, asset
    assert (await client.get("/api/timings")).status_code == 401


def test_missed_runs_of_a_minutely_schedule_are_found_quickly() -> None:
    now = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)
    start = now - timedelta(hours=8)
    schedule = {"id": "s1", "name": "minutely", "cron": "* * * * *", "timezone": "UTC", "interval_s": None}
    schedule |= {"enabled": True, "job": {"type": "ping"}, "created_at": start, "updated_at": start}
    fires = [start.replace(second=0) + timedelta(minutes=m) for m in range(1, 8 * 60 + 1)]
    gaps = {fires[10], fires[200], fires[400], fires[-1]}
    jobs = [{"schedule_id": "s1", "created_at": f + timedelta(seconds=2)} for f in fires if f not in gaps]
    began = time.monotonic()
    missed, more = calendar.missed_runs(cast(Any, [schedule]), cast(Any, jobs), start, now)
    assert time.monotonic() - began < 1.0  # bisection, not every job for every fire
    # The last fire, half a minute ago, is within the grace minutes: its job may still be on its way.
    assert [m.at for m in missed] == sorted(gaps - {fires[-1]}) and more is False

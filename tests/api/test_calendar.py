"""The calendar: jobs schedules queued in the range, and fire times still to come."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import asyncpg
from nats.js import JetStreamContext

from tests.api.conftest import Client, make_repository, queue_scheduled_job


def _range(since: datetime, until: datetime) -> str:
    return f"/api/calendar?from={quote(since.isoformat())}&to={quote(until.isoformat())}"


async def _schedule(client: Client, name: str, cron: str, **fields: Any) -> dict[str, Any]:
    body = {"name": name, "cron": cron, "job": {"type": "ping", "agent": "local"}, **fields}
    r = await client.post("/api/schedules", json=body)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


async def test_past_scheduled_jobs_and_upcoming_fires(client: Client, js: JetStreamContext, pool: asyncpg.Pool) -> None:
    repo = await make_repository(client)
    hourly = await _schedule(client, "hourly", "0 * * * *")
    await _schedule(client, "off", "*/10 * * * *", enabled=False)
    now = datetime.now(UTC)
    past = await queue_scheduled_job(js, pool, hourly["id"], created_at=now - timedelta(days=2))
    await queue_scheduled_job(js, pool, hourly["id"], created_at=now - timedelta(days=10))  # before the range
    assert (await client.post("/api/jobs", json={"type": "check", "repository_id": repo["id"]})).status_code == 201

    since, until = now - timedelta(days=3), now + timedelta(hours=10)
    before = datetime.now(UTC)
    r = await client.get(_range(since, until))
    after = datetime.now(UTC)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert r.json()["truncated"] is False
    assert items[0] == {
        "kind": "job",
        "at": past.created_at.isoformat().replace("+00:00", "Z"),
        "schedule_id": hourly["id"],
        "schedule_name": "hourly",
        "job_id": past.id,
        "type": "ping",
        "status": "queued",
    }
    fires = items[1:]
    assert {f["kind"] for f in fires} == {"fire"} and {f["schedule_name"] for f in fires} == {"hourly"}
    assert set(fires[0]) == {"kind", "at", "schedule_id", "schedule_name", "type"}
    assert fires[0]["schedule_id"] == hourly["id"] and fires[0]["type"] == "ping"
    times = [datetime.fromisoformat(f["at"]) for f in fires]
    assert times == sorted(times) and all(before - timedelta(seconds=1) < t <= until for t in times)
    first_hour = before.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    expected = [first_hour + timedelta(hours=i) for i in range(11) if first_hour + timedelta(hours=i) <= until]
    # A fire time between the two clocks may or may not count as still to come.
    assert [t for t in times if t > after] == [t for t in expected if t > after]

    # A past range has the jobs only; the default range holds them too.
    r = await client.get(_range(now - timedelta(days=11), now - timedelta(days=1)))
    assert [i["kind"] for i in r.json()["items"]] == ["job", "job"]
    default = (await client.get("/api/calendar")).json()["items"]
    assert default[0]["job_id"] == past.id and len([i for i in default if i["kind"] == "fire"]) >= 24 * 7 - 1


async def test_fire_items_are_capped(client: Client) -> None:
    await _schedule(client, "every minute", "* * * * *")
    now = datetime.now(UTC)
    answer = (await client.get(_range(now, now + timedelta(days=1)))).json()
    assert len(answer["items"]) == 500 and answer["truncated"] is True


async def test_bad_ranges(client: Client) -> None:
    now = datetime.now(UTC)
    r = await client.get(_range(now - timedelta(days=50), now + timedelta(days=50)))
    assert r.status_code == 422 and r.json()["field"] == "to"
    r = await client.get(_range(now, now - timedelta(days=1)))
    assert r.status_code == 422 and r.json()["field"] == "to"
    for query, field in [("from=yesterday", "from"), ("to=2026-13-01", "to")]:
        r = await client.get(f"/api/calendar?{query}")
        assert r.status_code == 400 and r.json()["field"] == field, (query, r.text)
    # An unencoded `+` arrives as a space, and a time without a zone is UTC.
    r = await client.get("/api/calendar?from=2026-01-01T00:00:00+01:00&to=2026-01-02T00:00:00")
    assert r.status_code == 200, r.text

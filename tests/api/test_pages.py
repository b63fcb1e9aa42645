"""The pages are served without a token (their data calls carry it) and hold the stable test ids."""

from __future__ import annotations

import re

from tests.api.conftest import Client

QUEUE_IDS = ("stat-in-queue", "stat-completed-24h", "stat-failed-24h", "stat-avg-duration", "in-progress", "recent",
             "queued")  # fmt: skip
JOB_IDS = ("job-status", "job-log", "job-error", "action-cancel", "action-retry", "action-download-log")
ASSETS = ("/static/common.js", "/static/queue.js", "/static/job.js", "/static/borgflow.css")


def _testids(html: str) -> set[str]:
    return set(re.findall(r'data-testid="([^"]+)"', html))


async def test_the_pages_load_without_a_token(client: Client) -> None:
    client.headers.pop("Authorization")
    r = await client.get("/queue")
    assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
    assert set(QUEUE_IDS) <= _testids(r.text)
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["cache-control"] == "no-store"

    r = await client.get("/queue/01abc")
    assert r.status_code == 200 and set(JOB_IDS) <= _testids(r.text)
    assert 'data-job-id="01abc"' in r.text

    for asset in ASSETS:
        r = await client.get(asset)
        assert r.status_code == 200 and r.text, asset
    r = await client.get("/", follow_redirects=False)
    assert r.status_code in (301, 302, 307) and r.headers["location"].endswith("/queue")
    # The data is not public.
    assert (await client.get("/api/queue")).status_code == 401


async def test_a_job_id_is_escaped_in_its_page(client: Client) -> None:
    r = await client.get('/queue/"><img src=x onerror=alert(1)>')
    assert r.status_code == 200
    assert "<img src=x" not in r.text and "&quot;&gt;&lt;img src=x" in r.text


async def test_the_pages_stay_out_of_the_openapi_schema(client: Client) -> None:
    paths = (await client.get("/schema/openapi.json")).json()["paths"]
    assert not any(p.startswith(("/queue", "/static")) for p in paths)
    assert "/api/jobs" in paths

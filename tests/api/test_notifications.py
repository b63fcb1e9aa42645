"""Notification targets: CRUD with the URL masked, a real test send, the delivery ledger."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import asyncpg
import pytest

from shared.event_filters import DEFAULT_EVENTS
from tests.api.conftest import Client

SECRET = "pw-s3cret-value"


@dataclass
class Receiver:
    """A local HTTP endpoint that records what is POSTed to it."""

    port: int
    bodies: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    got: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            got.append(json.loads(self.rfile.read(length) or b"{}"))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield Receiver(port=server.server_address[1], bodies=got)
    server.shutdown()
    server.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def _create(client: Client, **fields: Any) -> dict[str, Any]:
    r = await client.post("/api/notifications", json={"name": "ops", **fields})
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


async def test_crud_never_shows_the_urls_secret(client: Client, pool: asyncpg.Pool) -> None:
    url = f"json://alice:{SECRET}@127.0.0.1:9/hook"
    n = await _create(client, url=url)
    assert n["events"] == list(DEFAULT_EVENTS) and n["project"] == "default"
    assert n["url"].startswith("json://alice:") and SECRET not in str(n)
    assert await pool.fetchval("SELECT url FROM notifications") == url

    listed = await client.get("/api/notifications")
    got = await client.get(f"/api/notifications/{n['id']}")
    assert [x["id"] for x in listed.json()["items"]] == [n["id"]] and got.json() == n
    assert SECRET not in listed.text + got.text

    r = await client.put(f"/api/notifications/{n['id']}", json={"name": "on call", "events": ["backup.failed"]})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "on call" and r.json()["events"] == ["backup.failed"] and SECRET not in r.text
    # Sent back as GET shows it (masked URL): the stored URL stays.
    r = await client.put(f"/api/notifications/{n['id']}", json=r.json() | {"events": ["*.*", "plan.overdue"]})
    assert r.status_code == 200, r.text
    assert await pool.fetchval("SELECT url FROM notifications") == url
    assert await pool.fetchval("SELECT events FROM notifications") == ["*.*", "plan.overdue"]

    r = await client.put(f"/api/notifications/{n['id']}", json={"url": "json://127.0.0.1:10/other"})
    assert r.status_code == 200 and await pool.fetchval("SELECT url FROM notifications") == "json://127.0.0.1:10/other"

    assert (await client.delete(f"/api/notifications/{n['id']}")).status_code == 204
    assert (await client.get(f"/api/notifications/{n['id']}")).status_code == 404
    assert (await client.delete(f"/api/notifications/{n['id']}")).status_code == 404


async def test_bad_targets_name_the_field(client: Client, pool: asyncpg.Pool) -> None:
    good: dict[str, Any] = {"name": "ops", "url": "json://127.0.0.1:9/hook"}
    cases: list[tuple[dict[str, Any], str, int]] = [
        ({"url": "not a url"}, "url", 422),
        ({"url": f"nosuchservice://u:{SECRET}@host"}, "url", 422),
        ({"events": ["backup"]}, "events", 422),
        ({"events": [""]}, "events", 422),
        ({"events": ["Backup.Failed"]}, "events", 422),
        ({"events": ["backup.failed.now"]}, "events", 422),
        ({"name": ""}, "name", 400),
        ({"events": "backup.failed"}, "events", 400),
    ]
    for change, named, status in cases:
        r = await client.post("/api/notifications", json=good | change)
        assert r.status_code == status, (change, r.text)
        assert r.json()["field"] == named and SECRET not in r.text, (change, r.json())
    assert await pool.fetchval("SELECT count(*) FROM notifications") == 0

    n = await _create(client, url=good["url"])
    # As for POST: a value that breaks a rule is 422, a body of the wrong shape 400.
    puts: list[tuple[dict[str, Any], str, int]] = [
        ({"url": "not a url"}, "url", 422),
        ({"events": ["x"]}, "events", 422),
        ({"name": 5}, "name", 400),
    ]
    for change, named, status in puts:
        r = await client.put(f"/api/notifications/{n['id']}", json=change)
        assert r.status_code == status and r.json()["field"] == named, (change, r.text)
    assert (await client.get(f"/api/notifications/{n['id']}")).json() == n


async def test_test_send_reaches_the_target_and_is_recorded(
    client: Client, pool: asyncpg.Pool, receiver: Receiver
) -> None:
    n = await _create(client, url=f"json://127.0.0.1:{receiver.port}/hook")
    r = await client.post(f"/api/notifications/{n['id']}/test")
    assert r.status_code == 200, r.text
    assert r.json() == {"delivered": True}
    assert len(receiver.bodies) == 1
    assert "borgflow test notification" in receiver.bodies[0]["title"] + receiver.bodies[0]["message"]

    await pool.execute(
        "INSERT INTO deliveries (event_id, target_id, event_type, job_id, at, ok, error)"
        " VALUES ('e-old', $1, 'backup.failed', 'j-1', now() - interval '1 hour', true, NULL)",
        n["id"],
    )
    items = (await client.get(f"/api/notifications/{n['id']}/deliveries")).json()["items"]
    assert [(d["event_type"], d["job_id"], d["ok"], d["error"]) for d in items] == [
        ("test", None, True, None),
        ("backup.failed", "j-1", True, None),
    ]
    assert set(items[0]) == {"at", "event_type", "job_id", "ok", "error"}
    assert len((await client.get(f"/api/notifications/{n['id']}/deliveries?limit=1")).json()["items"]) == 1
    r = await client.get(f"/api/notifications/{n['id']}/deliveries?limit=0")
    assert r.status_code == 400 and r.json()["field"] == "limit"
    assert (await client.get("/api/notifications/nope/deliveries")).status_code == 404


async def test_test_send_to_a_closed_port_is_502_without_the_secret(client: Client, pool: asyncpg.Pool) -> None:
    n = await _create(client, url=f"json://alice:{SECRET}@127.0.0.1:{closed_port()}/hook")
    r = await client.post(f"/api/notifications/{n['id']}/test")
    assert r.status_code == 502, r.text
    answer = r.json()
    assert answer["delivered"] is False and answer["detail"] and SECRET not in r.text
    items = (await client.get(f"/api/notifications/{n['id']}/deliveries")).json()["items"]
    assert len(items) == 1 and items[0]["ok"] is False and items[0]["event_type"] == "test"
    assert items[0]["error"] == answer["detail"]
    assert (await client.delete(f"/api/notifications/{n['id']}")).status_code == 204
    assert await pool.fetchval("SELECT count(*) FROM deliveries") == 0  # its history went with it

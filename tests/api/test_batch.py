"""POST /api/jobs/batch: up to 1,000 bodies in one request, each accepted or refused on its own,
each accepted one exactly as POST /api/jobs would have queued it."""

from __future__ import annotations

from nats.js import JetStreamContext

from tests.api.conftest import Client, make_plan, make_repository
from tests.support.audit import audit


async def test_each_body_is_accepted_or_refused_on_its_own(client: Client, js: JetStreamContext) -> None:
    repo = await make_repository(client)
    plan = await make_plan(client, repo["id"])
    bodies = [
        {"type": "ping", "agent": "web-1"},
        {"type": "explode"},
        {"type": "check", "repository_id": repo["id"], "options": {"verify_data": True}},
        {"type": "backup", "plan_id": plan["id"]},
        {"type": "backup", "plan_id": plan["id"]},  # the plan's queue_behavior is cancel: refused
        {"type": "check", "repository_id": "nope"},
    ]
    r = await client.post("/api/jobs/batch", json={"jobs": bodies})
    assert r.status_code == 201, r.text
    items = r.json()["items"]
    assert len(items) == len(bodies)
    assert items[0]["type"] == "ping" and items[0]["status"] == "queued" and items[0]["agent"] == "web-1"
    assert items[1]["error"]["status"] == 422 and items[1]["error"]["field"] == "type"
    assert items[2]["type"] == "check" and items[2]["options"] == {"verify_data": True}
    assert items[3]["type"] == "backup" and items[3]["plan_name"] == plan["name"]
    assert items[4]["error"]["status"] == 409 and "queue_behavior" in items[4]["error"]["detail"]
    assert items[5]["error"]["status"] in (404, 422) and items[5]["error"]["field"] == "repository_id"

    # Exactly as posted alone.
    alone = (await client.post("/api/jobs", json=bodies[2])).json()
    same = ("type", "agent", "project", "repository_id", "options", "trigger", "requested_by", "priority")
    assert {k: items[2][k] for k in same} == {k: alone[k] for k in same}
    queued = (await audit(js)).jobs
    assert {items[i]["id"] for i in (0, 2, 3)} | {alone["id"]} == set(queued)
    assert all(str(v.status) == "queued" for v in queued.values())


async def test_a_thousand_in_one_request(client: Client, js: JetStreamContext) -> None:
    bodies = [{"type": "ping", "agent": f"a{i % 7}"} for i in range(1000)]
    r = await client.post("/api/jobs/batch", json={"jobs": bodies})
    assert r.status_code == 201, r.text
    ids = [item["id"] for item in r.json()["items"]]
    assert len(set(ids)) == 1000 and [i["agent"] for i in r.json()["items"]] == [b["agent"] for b in bodies]
    assert set((await audit(js)).jobs) == set(ids)
    counts = (await client.get("/api/queue")).json()
    assert counts["in_queue"] == 1000


async def test_more_than_a_thousand_or_none_is_refused(client: Client) -> None:
    too_many = await client.post("/api/jobs/batch", json={"jobs": [{"type": "ping", "agent": "a"}] * 1001})
    assert too_many.status_code == 400 and too_many.json()["field"] == "jobs"
    none = await client.post("/api/jobs/batch", json={"jobs": []})
    assert none.status_code == 400 and none.json()["field"] == "jobs"

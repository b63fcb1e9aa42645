"""A client address that presents unknown tokens again and again waits (429 with Retry-After),
refused before any token lookup, for longer each time; good clients go on."""

from __future__ import annotations

import httpx
import pytest
from nats.js import JetStreamContext

from services.api.limits.throttle import BLOCK_S, MAX_BLOCK_S, WINDOW_S, AuthThrottle
from shared import bus, ids
from shared.events import JobProgress, Progress
from tests.api.conftest import ADMIN_TOKEN, Client, auth

DETAIL = "too many unknown or revoked tokens from this address: retry after 60 seconds"


async def test_an_address_guessing_tokens_waits_and_good_clients_go_on(client: Client, js: JetStreamContext) -> None:
    assert (await client.get("/api/queue")).status_code == 200  # the admin token, seen valid
    fresh = (await client.post("/api/tokens", json={"name": "never used", "role": "viewer"})).json()["token"]
    for i in range(10):  # BORGFLOW_AUTH_FAILURES_PER_MINUTE's default
        r = await client.get("/api/queue", headers=auth(f"bf_guess_{i}"))
        assert r.status_code == 401 and r.json()["detail"] == "unknown or revoked token"

    r = await client.get("/api/queue", headers=auth("bf_guess_10"))
    assert r.status_code == 429 and r.headers["Retry-After"] == "60"
    assert r.json() == {"detail": DETAIL}
    async with client.websocket("/api/events?token=bf_guess_11", {"Authorization": ""}) as ws:
        assert await ws.closed_with() == 4429
    # A token this api has seen valid passes from the same address; a request with no token
    # is no guess (401 as ever); a valid token not seen yet waits like a guess.
    assert (await client.get("/api/queue")).status_code == 200
    async with client.websocket("/api/events?type=job.progress") as ws:
        job_id = ids.new_id()
        await bus.publish(js, JobProgress(job_id=job_id, data=Progress(percent=1.0)))
        assert (await ws.receive_json())["job_id"] == job_id
    assert (await client.get("/api/queue", headers={"Authorization": ""})).status_code == 401
    assert (await client.get("/api/queue", headers=auth(fresh))).status_code == 429

    # Another address is not held by this one's failures.
    other = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(base_url=client.base_url, transport=other) as elsewhere:
        assert (await elsewhere.get("/api/queue", headers=auth(fresh))).status_code == 200
        assert (await elsewhere.get("/api/queue", headers=auth("bf_guess_12"))).status_code == 401
        assert (await elsewhere.get("/api/queue", headers=auth(ADMIN_TOKEN))).status_code == 200


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _fail(throttle: AuthThrottle, times: int, address: str = "198.51.100.7") -> None:
    for i in range(times):
        throttle.failed(address, f"guess-{i}")


def test_each_block_of_an_address_is_twice_as_long_up_to_an_hour() -> None:
    clock = Clock()
    throttle = AuthThrottle(3, clock)
    _fail(throttle, 2)
    assert throttle.wait_s("198.51.100.7", "guess") == 0  # fewer than the limit
    clock.now += WINDOW_S  # and forgotten a minute later
    waits = []
    for _ in range(8):
        _fail(throttle, 3)
        waits.append(throttle.wait_s("198.51.100.7", "guess"))
        clock.now += waits[-1]
        assert throttle.wait_s("198.51.100.7", "guess") == 0  # waited: may try again
    assert waits == [60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert throttle.wait_s("203.0.113.9", "guess") == 0  # another address

    clock.now += MAX_BLOCK_S + 1  # quiet for an hour: starts over
    _fail(throttle, 3)
    assert throttle.wait_s("198.51.100.7", "guess") == BLOCK_S


def test_only_failures_within_a_minute_count() -> None:
    clock = Clock()
    throttle = AuthThrottle(3, clock)
    for _ in range(5):
        _fail(throttle, 1)
        clock.now += WINDOW_S / 2 + 1
    assert throttle.wait_s("198.51.100.7", "guess") == 0


@pytest.mark.parametrize("limit", [0, 3])
def test_a_token_seen_valid_passes_and_a_revoked_one_stops_passing(limit: int) -> None:
    throttle = AuthThrottle(limit, Clock())
    throttle.succeeded("good")
    _fail(throttle, 3)
    assert throttle.wait_s("198.51.100.7", "good") == 0
    assert throttle.wait_s("198.51.100.7", "guess") == (60 if limit else 0)  # limit 0: never throttled
    throttle.failed("198.51.100.7", "good")  # revoked since
    assert throttle.wait_s("198.51.100.7", "good") == (60 if limit else 0)

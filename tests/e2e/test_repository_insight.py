"""Repository insight against real borg, through `borgflow up`: stats, storage alerts, `borgflow repo stats`.

One system and one repository for the module. The repository starts with
storage_low_percent 0 (never low, whatever this machine's disk holds), so the
alerts are driven only by raising and lowering the threshold around the real
free space.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NATS

from shared import events as ev
from shared.streams import REPOSITORIES
from tests.support.upsystem import UpSystem, borgflow_exe, data_dir

pytestmark = pytest.mark.slow


class World:
    def __init__(self, system: UpSystem, repo: dict[str, Any], plan: dict[str, Any]) -> None:
        self.system = system
        self.repo = repo
        self.plan = plan

    def job(self, body: dict[str, Any]) -> dict[str, Any]:
        queued = self.system.ok("POST", "/api/jobs", body)
        done = self.system.wait_job(queued["id"])
        assert done["status"] == "completed", done.get("error")
        return done

    def storage_events(self) -> list[ev.AnyEvent]:
        env = dict(line.split("=", 1) for line in (self.system.data_dir / "borgflow.env").read_text().splitlines())
        return asyncio.run(_stream_events(env["BORGFLOW_NATS_URL"], REPOSITORIES))


async def _stream_events(nats_url: str, stream: str) -> list[ev.AnyEvent]:
    nc = NATS()
    await nc.connect(nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        first, last = info.state.first_seq or 1, info.state.last_seq or 0
        return [ev.decode((await js.get_msg(stream, seq)).data or b"") for seq in range(first, last + 1)]
    finally:
        await nc.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    work = tmp_path_factory.mktemp("insight")
    system = UpSystem(data_dir("bf-e2e-insight-"), work).start()
    try:
        body = {"name": "main", "location": str(work / "repo"), "agent": "local", "storage_low_percent": 0}
        repo = system.ok("POST", "/api/repositories", body)
        source = work / "src"
        source.mkdir()
        for i in range(4):  # incompressible: the dedup ratio is the dedup, not the compression
            (source / f"f{i}").write_bytes(os.urandom(256 * 1024))
        # queue: a backup asked for right after the last one ended must not meet it still running
        # in the read model (the api's refusal of a second one reads it, and may lag a moment).
        body = {"name": "data", "repository_id": repo["id"], "paths": [str(source)], "queue_behavior": "queue"}
        plan = system.ok("POST", "/api/plans", body)
        w = World(system, repo, plan)
        w.job({"type": "init", "repository_id": repo["id"], "options": {"encryption": "none"}})
        yield w
    finally:
        system.stop()


def test_two_backups_of_the_same_data_give_a_dedup_ratio(world: World) -> None:
    first = world.job({"type": "backup", "plan_id": world.plan["id"]})
    second = world.job({"type": "backup", "plan_id": world.plan["id"]})
    for done in (first, second):
        stats = done["result"]["stats"]
        assert {"read_bytes_per_s", "transfer_bytes_per_s", "compression_ratio", "dedup_hit_rate"} <= set(stats)
    assert first["result"]["stats"]["dedup_hit_rate"] < 0.1 < 0.9 < second["result"]["stats"]["dedup_hit_rate"]

    stats = world.system.ok("GET", f"/api/repositories/{world.repo['id']}/stats")
    assert stats["archives"] == 2
    assert stats["dedup_ratio"] > 1.5
    assert stats["original_size"] == 2 * 4 * 256 * 1024
    assert stats["deduplicated_size"] < stats["compressed_size"]
    assert stats["disk_used"] > 0 and stats["disk_free"] > 0
    # One day of history: nothing to fit a growth to.
    assert stats["projected_full_at"] is None
    assert len(stats["history"]) == 1 and stats["history"][0]["archives"] == 2


def test_storage_low_fires_once_per_crossing(world: World) -> None:
    path = f"/api/repositories/{world.repo['id']}"
    r = world.system.http.put(path, json={"storage_low_percent": 150})
    assert r.status_code == 400 and "storage_low_percent" in r.text
    assert world.system.ok("PUT", path, {"storage_low_percent": 99.9})["storage_low_percent"] == 99.9
    compact = {"type": "compact", "repository_id": world.repo["id"]}
    low = world.job(compact)
    world.job(compact)  # still low: no second alert
    assert world.system.ok("PUT", path, {"storage_low_percent": 0})["storage_low_percent"] == 0
    recovered = world.job(compact)
    seen = [(e.type, e.data.job_id) for e in world.storage_events() if isinstance(e, ev.RepositoryEvent)]
    assert seen == [("repository.storage_low", low["id"]), ("repository.storage_recovered", recovered["id"])]
    # A compact measures too (borg info): the stats stay whole.
    stats = world.system.ok("GET", f"{path}/stats")
    assert stats["archives"] == 2 and stats["dedup_ratio"] > 1.5


def test_the_cli_prints_the_stats(world: World, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BORGFLOW_")}
    env |= {"BORGFLOW_API_URL": world.system.base, "BORGFLOW_TOKEN": world.system.token, "HOME": str(tmp_path)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([borgflow_exe(), *args], env=env, capture_output=True, text=True, timeout=60, check=False)

    out = cli("repo", "stats", "main")
    assert out.returncode == 0, out.stderr
    facts = dict(line.split(None, 1) if " " in line else (line, "") for line in out.stdout.splitlines())
    assert "archives" in out.stdout and "deduplication" in out.stdout and "not growing" in out.stdout
    assert facts["archives"].strip() == "2"
    as_json = cli("repo", "stats", "main", "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["dedup_ratio"] > 1.5
    missing = cli("repo", "stats", "nope")
    assert missing.returncode != 0 and "no repository named 'nope'" in missing.stderr

"""The dispatcher with two real executors running real borg: limits and FIFO, read from the event log."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from nats.js import JetStreamContext

from services.dispatcher.app import run as run_dispatcher
from services.executor.app import run as run_executor
from shared import bus, ids
from shared import events as ev
from shared.config import Settings, SystemSettings
from shared.livesettings import put_settings
from shared.testing import NatsServer
from tests.support.audit import Audit, audit
from tests.support.upsystem import borg_exe
from tests.support.waiting import eventually

AGENTS = ("a1", "a2")


@pytest_asyncio.fixture(loop_scope="session")
async def services(nats_server: NatsServer, js: JetStreamContext, tmp_path: Path) -> AsyncIterator[None]:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(run_dispatcher(Settings(nats_url=nats_server.url), stop))]
    for agent in AGENTS:
        s = Settings(nats_url=nats_server.url, agent=agent, data_dir=str(tmp_path / agent), heartbeat_interval_s=1)
        tasks.append(asyncio.create_task(run_executor(s, stop)))
    yield
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 30)


def repo(tmp_path: Path, agent: str) -> ev.RepositoryRef:
    return ev.RepositoryRef(
        id=ids.new_id(), name=f"repo-{agent}", location=str(tmp_path / f"repo-{agent}"), agent=agent
    )


def source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    for i in range(20):
        (src / f"f{i}").write_bytes(bytes([i]) * 1000)
    return src


async def queue(js: JetStreamContext, job_type: str, r: ev.RepositoryRef, paths: list[str] | None = None) -> str:
    job_id = ids.new_id()
    plan = None
    if job_type == "backup":
        plan = ev.PlanRef(
            id="p-" + r.id,
            name=f"plan-{r.agent}",
            repository_id=r.id,
            paths=paths or [],
            archive_name="{plan}-" + job_id,
        )
    options = {"encryption": "none"} if job_type == "init" else {}
    spec = ev.JobSpec(
        id=job_id,
        type=job_type,
        agent=r.agent,
        repository_id=r.id,
        repository=r,
        plan=plan,
        plan_id=plan.id if plan else None,
        options=options,
        created_at=ev.utcnow(),
    )
    await bus.publish(js, ev.JobQueued(job_id=job_id, data=spec))
    return job_id


async def agents_online(js: JetStreamContext) -> list[str]:
    """A finished ping per agent: the dispatcher has seen every agent online."""
    pings = []
    for agent in AGENTS:
        job_id = ids.new_id()
        spec = ev.JobSpec(id=job_id, type="ping", agent=agent, created_at=ev.utcnow())
        await bus.publish(js, ev.JobQueued(job_id=job_id, data=spec))
        pings.append(job_id)
    await all_finished(js, len(pings))
    return pings


async def all_finished(js: JetStreamContext, n: int) -> Audit:
    async def check() -> Audit | None:
        a = await audit(js)
        return a if len(a.jobs) == n and not a.unfinished() else None

    result: Audit = await eventually(check, timeout=90, what=f"{n} jobs finished")
    return result


async def test_global_limit_one_runs_in_queue_order(services: None, js: JetStreamContext, tmp_path: Path) -> None:
    await put_settings(js, SystemSettings(max_concurrent_jobs=1))
    pings = await agents_online(js)
    repos = {a: repo(tmp_path, a) for a in AGENTS}
    src = str(source(tmp_path))
    queued = [await queue(js, "init", repos[a]) for a in AGENTS]
    for _ in range(2):
        queued += [await queue(js, "backup", repos[a], [src]) for a in AGENTS]
    a = await all_finished(js, len(pings) + len(queued))
    assert a.max_active == 1, "two jobs were sent or running at once under max_concurrent_jobs=1"
    assert [j for j in a.sent_order if j in queued] == queued, "jobs did not start in queue order"
    assert all(a.sends[j] == 1 for j in queued) and all(a.terminals[j] == 1 for j in queued)
    assert {a.jobs[j].status for j in queued} == {"completed"}


async def test_two_agents_share_the_global_limit(services: None, js: JetStreamContext, tmp_path: Path) -> None:
    await put_settings(js, SystemSettings(max_concurrent_jobs=2, agent_slots=1))
    pings = await agents_online(js)
    repos = {a: repo(tmp_path, a) for a in AGENTS}
    src = str(source(tmp_path))
    jobs = [await queue(js, "init", repos[a]) for a in AGENTS]
    for _ in range(3):
        jobs += [await queue(js, "backup", repos[a], [src]) for a in AGENTS]
    a = await all_finished(js, len(pings) + len(jobs))
    assert a.max_active == 2, "both agents should have worked at once, and never more than 2 jobs"
    assert a.max_per_agent == 1 and a.max_writers_per_repo == 1
    assert {a.jobs[j].status for j in jobs} == {"completed"}
    # Per agent, jobs still start in their queue order.
    for agent in AGENTS:
        mine = [j for j in jobs if a.jobs[j].agent == agent]
        assert [j for j in a.sent_order if j in mine] == mine


async def test_a_backup_chains_prune_and_compact(services: None, js: JetStreamContext, tmp_path: Path) -> None:
    await put_settings(js, SystemSettings())
    pings = await agents_online(js)
    r = repo(tmp_path, "a1")
    init = await queue(js, "init", r)
    plan = ev.PlanRef(
        id="p-chain",
        name="chained",
        repository_id=r.id,
        paths=[str(source(tmp_path))],
        prune_after=True,
        compact_after=True,
        retention=ev.Retention(keep_last=1),
    )
    backups = []
    for _ in range(2):
        job_id = ids.new_id()
        spec = ev.JobSpec(
            id=job_id,
            type="backup",
            agent="a1",
            repository_id=r.id,
            repository=r,
            plan=plan,
            plan_id=plan.id,
            created_at=ev.utcnow(),
        )
        await bus.publish(js, ev.JobQueued(job_id=job_id, data=spec))
        backups.append(job_id)
    # init + 2 backups, each backup followed by a prune and a compact
    a = await all_finished(js, len(pings) + 1 + 2 + 4)
    assert a.jobs[init].status == "completed"
    children = [v for v in a.jobs.values() if v.parent_id in backups]
    assert sorted((v.type, v.status) for v in children) == [("compact", "completed")] * 2 + [("prune", "completed")] * 2
    last_prune = max((v for v in children if v.type == "prune"), key=lambda v: v.finished_at or v.created_at)
    assert last_prune.result is not None and len(last_prune.result.details["kept"]) == 1
    env = dict(
        os.environ, BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="yes", BORG_BASE_DIR=str(tmp_path / "a1" / "borg")
    )
    argv = [borg_exe(), "list", "--short", r.location]
    out = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, check=True, env=env)
    assert len(out.stdout.split()) == 1, out.stdout

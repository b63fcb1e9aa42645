"""An executor that died (SIGKILL) and starts again: the jobs it left running end `failed`
as `executor_restarted`, no borg of theirs keeps running, a stale lock on a local
repository is broken (a remote one's never), and a decided outcome is not lost."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest_asyncio

from services.executor import processes
from services.executor.cleanup import lock_holders
from services.executor.records import RecordedProcess, RunningJob, RunningRecords
from shared import bus
from shared import events as ev
from shared.config import default_borg_bin
from shared.events import RepositoryRef, utcnow
from tests.executor.conftest import (
    AGENT,
    Executor,
    Template,
    eventually,
    job_log,
    job_types,
    make_endless_source,
)


class Identity(msgspec.Struct, frozen=True):
    pid: int
    started_at: float


async def _spawn(*argv: str, **kw: object) -> tuple[asyncio.subprocess.Process, Identity]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        start_new_session=True,
        **kw,  # type: ignore[arg-type]
    )
    started = processes.started_at(proc.pid)
    assert started is not None
    return proc, Identity(proc.pid, started)


async def _dead_process() -> Identity:
    """The pid and start time of a process that has exited (a dead executor, say)."""
    proc, identity = await _spawn("sleep", "30")
    proc.kill()
    await proc.wait()
    return identity


@pytest_asyncio.fixture(loop_scope="session")
async def leftovers() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """Processes a test starts; whatever still runs at its end is killed."""
    procs: list[asyncio.subprocess.Process] = []
    yield procs
    for proc in procs:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


async def _running_on_the_stream(ex: Executor, spec: ev.JobSpec, claimer: Identity) -> None:
    """The job queued, sent to this agent and started by an executor process that is gone now."""
    sent_seq = await ex.send(spec)
    started = ev.StartedData(agent=AGENT, pid=claimer.pid, pid_started_at=claimer.started_at)
    await bus.publish(ex.js, ev.JobStarted(job_id=spec.id, data=started), expect_last_seq=sent_seq)


def _record(ex: Executor, records: list[RunningJob]) -> None:
    """What a previous run of the executor left in its state file."""
    ex.state_file.parent.mkdir(parents=True, exist_ok=True)
    doc = {"version": 1, "jobs": {r.job_id: r for r in records}}
    ex.state_file.write_bytes(msgspec.json.encode(doc))


def _left(spec: ev.JobSpec, executor: Identity, process: RecordedProcess | None, **kw: object) -> RunningJob:
    return RunningJob(
        job_id=spec.id,
        type=spec.type,
        location=spec.repository.location if spec.repository else None,
        started_at=utcnow(),
        executor_pid=executor.pid,
        executor_started_at=executor.started_at,
        process=process,
        **kw,  # type: ignore[arg-type]
    )


async def _stale_lock(ex: Executor, repo: RepositoryRef) -> None:
    """The lock a SIGKILLed borg leaves behind."""
    holder, _ = await _spawn(
        default_borg_bin(),
        "with-lock",
        repo.location,
        "sleep",
        "60",
        env={**os.environ, "BORG_BASE_DIR": str(ex.tmp_path / "me" / "borg")},
    )
    await eventually(lambda: (Path(repo.location) / "lock.exclusive").exists(), what="the lock taken")
    os.killpg(holder.pid, signal.SIGKILL)
    await holder.wait()


# --------------------------------------------------------------------------- a real crash


async def test_a_killed_executor_fails_its_backup_when_it_starts_again_and_leaves_the_repository_usable(
    harness: Executor, template: Template, tmp_path: Path, leftovers: list[asyncio.subprocess.Process]
) -> None:
    repo = harness.copy_of(template)
    spec = harness.spec("backup", repo, harness.plan(repo, [str(make_endless_source(tmp_path))]))
    first = await harness.start_process()
    leftovers.append(first)
    await harness.send(spec)

    def borg_on_record() -> RecordedProcess | None:
        job = harness.on_record().get(spec.id)
        if job is None or job["process"] is None or job["process"]["what"] != "borg":
            return None
        return msgspec.convert(job["process"], RecordedProcess)

    await eventually(lambda: borg_on_record() is not None, timeout=20, what="borg on record")
    borg = borg_on_record()
    assert borg is not None and borg.started_at is not None
    await eventually(lambda: (Path(repo.location) / "lock.exclusive").exists(), what="borg holding the lock")
    archive = harness.on_record()[spec.id]["archive"]
    assert archive and archive.startswith("daily-")

    first.send_signal(signal.SIGKILL)  # no clean stop: the executor dies mid-backup
    await first.wait()
    try:
        harness.start()
        job = await harness.outcome(spec.id)
        assert job.status == "failed" and job.error is not None
        assert job.error.kind == "executor_restarted"
        assert job.error.message.startswith(f"the executor on agent {AGENT} restarted while the job ran: borg")
        assert "safe to retry" in job.error.hint and "automatic retry" in job.error.hint
        # The archive it was writing, for the plan's retry to look for first.
        assert job.result is not None and job.result.archive == archive
        assert await job_types(harness.js, spec.id) == ["job.queued", "job.sent", "job.started", "job.failed"]
        assert not processes.alive(borg.pid, borg.started_at)
        assert lock_holders(repo.location) == (False, set())
        await eventually(lambda: harness.on_record() == {}, what="the record forgotten")
        # The repository is usable at once: no stale lock in the way of the next backup.
        again = await harness.run_job(harness.spec("backup", repo, harness.plan(repo, [str(template.src)])))
        assert again.status == "completed", again.error
    finally:
        if processes.alive(borg.pid, borg.started_at):
            os.killpg(borg.pid, signal.SIGKILL)


# --------------------------------------------------------------------------- what it finds on record


async def test_a_borg_that_outlived_its_executor_is_stopped_and_its_job_fails(
    harness: Executor, template: Template, leftovers: list[asyncio.subprocess.Process]
) -> None:
    repo = harness.copy_of(template)
    spec = harness.spec("check", repo)
    # A borg of the dead executor, still holding the repository's lock.
    orphan, borg = await _spawn(
        default_borg_bin(),
        "with-lock",
        repo.location,
        "sleep",
        "60",
        env={**os.environ, "BORG_BASE_DIR": str(harness.tmp_path / "agent" / "borg")},
    )
    leftovers.append(orphan)
    await eventually(lambda: (Path(repo.location) / "lock.exclusive").exists(), what="the orphan holding the lock")
    dead = await _dead_process()
    await _running_on_the_stream(harness, spec, dead)
    _record(harness, [_left(spec, dead, RecordedProcess(pid=borg.pid, started_at=borg.started_at, what="borg"))])

    harness.start()
    job = await harness.outcome(spec.id)
    assert job.status == "failed" and job.error is not None and job.error.kind == "executor_restarted"
    assert job.error.message == (
        f"the executor on agent {AGENT} restarted while the job ran: "
        f"borg (pid {borg.pid}) was still running and was stopped with SIGINT"
    )
    await asyncio.wait_for(orphan.wait(), 5)  # ours to reap: the executor only saw it become a zombie
    assert lock_holders(repo.location) == (False, set())
    log = [line.message for line in job_log(harness, spec.id)]
    assert f"sending SIGINT to pid {borg.pid}" in log
    await eventually(lambda: harness.on_record() == {}, what="the record forgotten")


async def test_a_recorded_pid_now_used_by_another_process_counts_as_gone_and_the_stale_lock_is_broken(
    harness: Executor, template: Template, leftovers: list[asyncio.subprocess.Process]
) -> None:
    repo = harness.copy_of(template)
    await _stale_lock(harness, repo)
    spec = harness.spec("backup", repo, harness.plan(repo, [str(template.src)]))
    # An unrelated process that has the pid our borg had: it started later than ours did.
    stranger, other = await _spawn("sleep", "60")
    leftovers.append(stranger)
    ours = RecordedProcess(pid=other.pid, started_at=other.started_at - 3600, what="borg")
    dead = await _dead_process()
    await _running_on_the_stream(harness, spec, dead)
    _record(harness, [_left(spec, dead, ours, archive="daily-2026-11-23T16:20:05")])

    harness.start()
    job = await harness.outcome(spec.id)
    assert job.status == "failed" and job.error is not None and job.error.kind == "executor_restarted"
    assert f"borg (pid {other.pid}) was no longer running" in job.error.message
    assert job.result is not None and job.result.archive == "daily-2026-11-23T16:20:05"
    assert processes.alive(other.pid, other.started_at)  # not ours: left alone
    assert lock_holders(repo.location) == (False, set())
    log = [line.message for line in job_log(harness, spec.id)]
    assert f"the executor restarted while borg ran: broke the lock it left on {repo.location}" in log


async def test_a_remote_repositorys_lock_is_left_alone_and_a_job_only_the_heartbeat_names_fails_too(
    harness: Executor,
) -> None:
    remote = RepositoryRef(id="r-remote", name="offsite", location="ssh://borg@backup.example/./repo", agent=AGENT)
    recorded = harness.spec("prune", remote, keep_last=3)
    named = harness.spec("ping")
    dead = await _dead_process()
    gone = RecordedProcess(pid=dead.pid, started_at=dead.started_at, what="borg")
    for spec in (recorded, named):
        await _running_on_the_stream(harness, spec, dead)
    _record(harness, [_left(recorded, dead, gone)])
    # The previous run's last heartbeat names both; only one is in the state file.
    beat = ev.HeartbeatData(agent=AGENT, running=[recorded.id, named.id], pid=dead.pid)
    await bus.publish(harness.js, ev.AgentHeartbeat(data=beat))

    harness.start()
    job = await harness.outcome(recorded.id)
    assert job.status == "failed" and job.error is not None and job.error.kind == "executor_restarted"
    assert f"`borg break-lock {remote.location}`" in job.error.hint and "never broken" in job.error.hint
    log = [line.message for line in job_log(harness, recorded.id)]
    assert any("not broken automatically" in m for m in log)
    other = await harness.outcome(named.id)
    assert other.status == "failed" and other.error is not None and other.error.kind == "executor_restarted"
    assert other.error.message.endswith("restarted while the job ran: no record of its processes was left")


async def test_an_outcome_decided_before_the_crash_is_published_on_start(harness: Executor) -> None:
    spec = harness.spec("ping")
    dead = await _dead_process()
    await _running_on_the_stream(harness, spec, dead)
    decided = ev.JobCompleted(job_id=spec.id, data=ev.OutcomeData(result=ev.JobResult(exit_code=0)))
    _record(harness, [_left(spec, dead, None, outcome=decided)])

    harness.start()
    job = await harness.outcome(spec.id)
    assert job.status == "completed" and job.result == ev.JobResult(exit_code=0)
    [(last, _)] = (await bus.job_events(harness.js, spec.id))[-1:]
    assert last.id == decided.id  # the very event: had it landed before the crash, it lands once


async def test_a_job_on_record_whose_claim_never_landed_is_claimed_as_usual(harness: Executor) -> None:
    spec = harness.spec("ping")
    await harness.send(spec)
    _record(harness, [_left(spec, await _dead_process(), None)])
    harness.start()
    job = await harness.outcome(spec.id)
    assert job.status == "completed"
    assert await job_types(harness.js, spec.id) == ["job.queued", "job.sent", "job.started", "job.completed"]
    await eventually(lambda: harness.on_record() == {}, what="the record forgotten")


async def test_a_redelivered_sent_of_a_job_a_dead_executor_claimed_ends_it(harness: Executor) -> None:
    # Nothing on record, no heartbeat: only the sent, delivered again, tells of the job.
    spec = harness.spec("ping")
    await _running_on_the_stream(harness, spec, await _dead_process())
    harness.start()
    job = await harness.outcome(spec.id)
    assert job.status == "failed" and job.error is not None and job.error.kind == "executor_restarted"


# --------------------------------------------------------------------------- the state file


async def test_the_state_file_keeps_a_job_from_claim_to_landed_outcome(tmp_path: Path) -> None:
    records = RunningRecords(tmp_path / "executor-a1")
    assert records.load() == {}
    spec = ev.JobSpec(
        id="j1",
        type="backup",
        agent=AGENT,
        created_at=utcnow(),
        repository=RepositoryRef(id="r1", name="main", location="/srv/repo", agent=AGENT),
    )
    await records.claiming(spec)
    await records.spawned("j1", os.getpid(), "borg", archive="daily-1")
    outcome = ev.JobFailed(job_id="j1", data=ev.OutcomeData(error=ev.JobError(kind="borg_error", message="x")))
    await records.ended("j1", outcome)
    [job] = RunningRecords(tmp_path / "executor-a1").load().values()  # as the next start reads it
    assert (job.job_id, job.type, job.location, job.archive) == ("j1", "backup", "/srv/repo", "daily-1")
    assert job.process == RecordedProcess(pid=os.getpid(), started_at=processes.started_at(os.getpid()), what="borg")
    assert job.outcome == outcome
    await records.forget("j1")
    assert RunningRecords(tmp_path / "executor-a1").load() == {}


def test_a_broken_state_file_is_set_aside(tmp_path: Path) -> None:
    (tmp_path / "running.json").write_text("{half a")
    assert RunningRecords(tmp_path).load() == {}
    assert [p.name.startswith("running.json.broken-") for p in tmp_path.iterdir()] == [True]


def test_lock_holders_are_read_from_borgs_lock_files(tmp_path: Path) -> None:
    assert lock_holders(str(tmp_path)) == (False, set())
    (tmp_path / "lock.exclusive").mkdir()
    (tmp_path / "lock.exclusive" / "host@3281355014145.4242-0").touch()
    (tmp_path / "lock.roster").write_text('{"exclusive": [["host@3281355014145", 4242, 0]], "shared": [["h", 7, 1]]}')
    assert lock_holders(f"file://{tmp_path}") == (True, {4242, 7})

"""Cancel and stop: borg is interrupted (SIGINT, then SIGTERM, then SIGKILL) and the job
ends exactly once. A repository lock held by `borg with-lock` keeps borg waiting, so
there is a running borg to cancel without big test data."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from services.executor import cleanup
from services.executor.commands import borg_environment
from shared import bus
from shared import events as ev
from shared.config import default_borg_bin
from shared.events import RepositoryRef
from tests.executor.conftest import (
    Executor,
    Template,
    archive_names,
    borg,
    eventually,
    job_log,
    job_types,
    make_endless_source,
    wait_for_event,
)
from tests.executor.test_running_scripts import Lines


@pytest_asyncio.fixture(loop_scope="session")
async def locked_repo(harness: Executor) -> AsyncIterator[RepositoryRef]:
    """An unencrypted repository whose lock another borg holds for the whole test."""
    repo = harness.repository("locked", has_passphrase=False)
    rc, _, err = await borg("init", "--encryption=none", repo.location, data_dir=harness.tmp_path / "me")
    assert rc == 0, err
    holder = await asyncio.create_subprocess_exec(
        default_borg_bin(),
        "with-lock",
        repo.location,
        "sleep",
        "120",
        env={**os.environ, "BORG_BASE_DIR": str(harness.tmp_path / "me" / "borg")},
        stdin=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    lock = Path(repo.location) / "lock.exclusive"
    await eventually(lock.exists, what="borg with-lock holding the lock")
    yield repo
    os.killpg(holder.pid, signal.SIGTERM)
    await holder.wait()


async def _borg_running(ex: Executor, job_id: str) -> None:
    """Wait until the executor has logged that borg started for this job."""
    subject = f"borgflow.logs.{job_id}"
    await eventually(lambda: any(b"borg started with pid" in m.data for m in ex.seen if m.subject == subject))


async def _cancel(ex: Executor, job_id: str) -> None:
    last = await bus.last_job_seq(ex.js, job_id)
    await bus.publish(
        ex.js,
        ev.JobCancelRequested(job_id=job_id, data=ev.CancelRequestedData(by="alice")),
        expect_last_seq=last,
    )


async def test_a_lock_held_elsewhere_fails_as_lock_timeout(
    harness: Executor, locked_repo: RepositoryRef, tmp_path: Path
) -> None:
    harness.start()
    src = tmp_path / "data"
    src.mkdir()
    job = await harness.run_job(harness.spec("backup", locked_repo, harness.plan(locked_repo, [str(src)]), lock_wait=0))
    assert job.status == "failed" and job.error is not None
    assert job.error.kind == "lock_timeout" and job.error.exit_code == 73
    assert "--lock-wait" in job.error.hint


async def test_cancelling_a_running_backup_interrupts_borg(
    harness: Executor, locked_repo: RepositoryRef, tmp_path: Path
) -> None:
    harness.start()
    src = tmp_path / "data"
    src.mkdir()
    spec = harness.spec("backup", locked_repo, harness.plan(locked_repo, [str(src)]), lock_wait=60)
    await harness.send(spec)
    await _borg_running(harness, spec.id)
    await _cancel(harness, spec.id)
    job = await harness.outcome(spec.id)
    assert job.status == "cancelled" and job.error is not None
    assert job.error.kind == "cancelled_by_user" and "by alice" in job.error.message
    log = b"".join(m.data for m in harness.seen if m.subject == f"borgflow.logs.{spec.id}")
    assert b"sending SIGINT" in log and b"sending SIGKILL" not in log
    # borg ignores a first SIGINT once it waits for the lock: the executor escalates to
    # SIGTERM. (On a loaded machine the SIGINT may land before borg got that far: it
    # stops with rc 2, or 130 (128 + SIGINT) when it was still starting up.)
    assert job.error.exit_code in (2, 130, 143)
    if job.error.exit_code == 143:
        assert b"sending SIGTERM" in log
    assert (await job_types(harness.js, spec.id))[-2:] == ["job.cancel_requested", "job.cancelled"]


async def test_stopping_the_executor_fails_its_running_job_for_a_retry(
    harness: Executor, locked_repo: RepositoryRef, tmp_path: Path
) -> None:
    harness.start()
    src = tmp_path / "data"
    src.mkdir()
    spec = harness.spec("backup", locked_repo, harness.plan(locked_repo, [str(src)]), lock_wait=60)
    await harness.send(spec)
    await _borg_running(harness, spec.id)
    await harness.halt()
    job = await bus.load_job(harness.js, spec.id)
    assert job is not None and job.status == "failed" and job.error is not None
    assert job.error.kind == "executor_restarted"


@pytest.mark.parametrize(
    ("asked", "kind", "message"),
    [
        (ev.CancelRequestedData(by="bob"), "cancelled_by_user", "cancelled by user by bob before borg started"),
        (
            ev.CancelRequestedData(by="dispatcher", reason="no progress for 1800s (stall timeout)", kind="stalled"),
            "stalled",
            "no progress for 1800s (stall timeout) before borg started",
        ),
    ],
    ids=["by a person", "stalled"],
)
async def test_a_job_cancelled_before_it_was_claimed_ends_cancelled(
    harness: Executor, asked: ev.CancelRequestedData, kind: str, message: str
) -> None:
    spec = harness.spec("ping")
    sent_seq = await harness.send(spec)
    await bus.publish(harness.js, ev.JobCancelRequested(job_id=spec.id, data=asked), expect_last_seq=sent_seq)
    harness.start()
    job = await harness.outcome(spec.id)
    assert job.status == "cancelled" and job.error is not None
    assert (job.error.kind, job.error.message) == (kind, message)
    assert await job_types(harness.js, spec.id) == [
        "job.queued",
        "job.sent",
        "job.cancel_requested",
        "job.cancelled",
    ]


async def test_a_stalled_backup_is_stopped_and_ends_cancelled_as_stalled(
    executor: Executor, template: Template, tmp_path: Path
) -> None:
    repo = executor.copy_of(template)
    spec = executor.spec("backup", repo, executor.plan(repo, [str(make_endless_source(tmp_path))]))
    await executor.send(spec)
    await _borg_running(executor, spec.id)
    last = await bus.last_job_seq(executor.js, spec.id)
    stalled = ev.CancelRequestedData(by="dispatcher", reason="no progress for 1800s (stall timeout)", kind="stalled")
    await bus.publish(executor.js, ev.JobCancelRequested(job_id=spec.id, data=stalled), expect_last_seq=last)
    job = await executor.outcome(spec.id)
    assert job.status == "cancelled" and job.error is not None
    assert job.error.kind == "stalled"
    assert job.error.message.startswith("no progress for 1800s (stall timeout): borg stopped with exit code ")
    assert "stall_timeout_s" in job.error.hint and "reachability" in job.error.hint
    log = [line.message for line in job_log(executor, spec.id)]
    assert "no progress for 1800s (stall timeout): sending SIGINT to borg" in log


async def test_cancelling_a_backup_leaves_no_archive_and_no_checkpoint(
    executor: Executor, template: Template, tmp_path: Path
) -> None:
    src = make_endless_source(tmp_path)  # borg is still reading when the cancel arrives
    repo = executor.copy_of(template)
    spec = executor.spec("backup", repo, executor.plan(repo, [str(src)]))
    await executor.send(spec)
    await wait_for_event(executor.js, f"borgflow.progress.{spec.id}", lambda t: t == "job.progress", 20)
    await _cancel(executor, spec.id)
    job = await executor.outcome(spec.id, timeout=30)
    assert job.status == "cancelled" and job.error is not None and job.error.kind == "cancelled_by_user"
    # The name it tried, for a retry to look for; the archive itself is not there.
    assert job.result is not None and job.result.archive is not None and job.result.archive.startswith("daily-")
    names = await archive_names(executor, repo, checkpoints=True)
    assert names == ["t-1", "t-2", "t-3"]  # the backup's archive and every checkpoint of it are gone
    log = [line.message for line in job_log(executor, spec.id)]
    assert any("sending SIGINT" in m for m in log)
    assert any("checkpoint archive" in m for m in log)


async def test_a_stale_lock_left_by_a_killed_borg_is_broken_on_a_local_repository(
    harness: Executor, template: Template, tmp_path: Path
) -> None:
    repo = harness.copy_of(template)
    holder = await asyncio.create_subprocess_exec(
        default_borg_bin(),
        "with-lock",
        repo.location,
        "sleep",
        "60",
        env={**os.environ, "BORG_BASE_DIR": str(tmp_path / "me" / "borg")},
        stdin=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    lock = Path(repo.location) / "lock.exclusive"
    await eventually(lock.exists, what="borg with-lock holding the lock")
    os.killpg(holder.pid, signal.SIGKILL)  # as a cancel's last resort does: the lock stays
    await holder.wait()
    assert lock.exists()
    out = Lines()
    env = borg_environment(os.environ, data_dir=tmp_path / "agent", passphrase=None)
    await cleanup.break_lock(default_borg_bin(), repo.location, env, out)
    assert not lock.exists()
    assert out.lines == [(f"borg was killed: broke the lock it left on {repo.location}", "info", "executor")]


async def test_a_remote_repositorys_lock_is_never_broken_automatically(tmp_path: Path) -> None:
    out = Lines()
    location = "ssh://borg@backup.example/./repo"
    # a borg that would fail loudly if it ran at all
    await cleanup.break_lock(str(tmp_path / "no-borg-here"), location, {}, out)
    [(message, level, source)] = out.lines
    assert level == "warning" and source == "executor"
    assert f"`borg break-lock {location}`" in message and "not broken automatically" in message


async def test_borg_is_stopped_for_a_job_that_was_ended_elsewhere(
    harness: Executor, locked_repo: RepositoryRef, tmp_path: Path
) -> None:
    """Cut off long enough, an agent's running job is failed as agent_lost; once the agent sees
    that, its borg must not go on, and its own late outcome is dropped."""
    harness.start()
    src = tmp_path / "data"
    src.mkdir()
    spec = harness.spec("backup", locked_repo, harness.plan(locked_repo, [str(src)]), lock_wait=60)
    await harness.send(spec)
    await _borg_running(harness, spec.id)
    lost = ev.JobFailed(
        job_id=spec.id,
        data=ev.OutcomeData(error=ev.JobError(kind="agent_lost", message="agent a1 stopped sending heartbeats")),
    )
    await bus.publish(harness.js, lost, expect_last_seq=await bus.last_job_seq(harness.js, spec.id))
    log_subject = f"borgflow.logs.{spec.id}"
    await eventually(
        lambda: any(b"ended elsewhere" in m.data for m in harness.seen if m.subject == log_subject),
        timeout=15,
        what="the executor stopping borg",
    )
    await eventually(lambda: not harness.on_record(), timeout=15, what="the job off the executor's record")
    kinds = await job_types(harness.js, spec.id)
    assert kinds[-1] == "job.failed" and kinds.count("job.failed") == 1 and "job.cancelled" not in kinds

"""A retry of a backup whose failed attempt did create its archive: the repository is
asked first, and the backup is not run twice."""

from __future__ import annotations

from pathlib import Path

import msgspec

from shared.events import JobSpec
from tests.executor.conftest import Executor, Template, archive_names, borg, job_log


def _retry_of(spec: JobSpec, archive: str) -> JobSpec:
    """What the dispatcher queues: the next attempt, naming the archive the failed one tried."""
    return msgspec.structs.replace(spec, retry_of="01failedattempt", attempt=2, archive=archive, trigger="retry")


async def test_a_retried_backup_whose_archive_exists_completes_without_running_borg_create(
    executor: Executor, template: Template, tmp_path: Path
) -> None:
    repo = executor.copy_of(template)
    dumped = tmp_path / "dumped"
    plan = executor.plan(repo, [str(template.src)], name="t", pre_scripts=[f"touch {dumped}"])
    job = await executor.run_job(_retry_of(executor.spec("backup", repo, plan), "t-2"))
    assert job.status == "completed", job.error
    assert job.result is not None and job.result.archive == "t-2"
    assert job.result.details == {"already_created": True, "by_job": "01failedattempt"}
    assert await archive_names(executor, repo, checkpoints=True) == ["t-1", "t-2", "t-3"]
    assert not dumped.exists()  # nothing ran: not even the plan's pre-script
    log = [line.message for line in job_log(executor, job.id)]
    assert "archive t-2 was already created by job 01failedattempt: nothing to back up again" in log
    assert not any(m.startswith("starting ") for m in log)


async def test_a_retried_backup_whose_archive_is_missing_backs_up_under_a_fresh_name(
    executor: Executor, template: Template
) -> None:
    repo = executor.copy_of(template)
    tried = "t-2026-11-23T16:20:05"
    # The failed attempt got as far as a checkpoint: that is not the archive.
    rc, _, err = await borg(
        "create", f"{repo.location}::{tried}.checkpoint", str(template.src / "dir1"), data_dir=executor.tmp_path / "me"
    )
    assert rc == 0, err
    plan = executor.plan(repo, [str(template.src)], name="t")
    job = await executor.run_job(_retry_of(executor.spec("backup", repo, plan), tried))
    assert job.status == "completed", job.error
    assert job.result is not None and job.result.archive not in (None, tried)
    assert "already_created" not in job.result.details
    assert job.result.archive in await archive_names(executor, repo)
    log = [line.message for line in job_log(executor, job.id)]
    assert f"archive {tried} is not in the repository: backing up" in log

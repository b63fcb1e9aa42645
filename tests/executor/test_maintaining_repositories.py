"""prune, compact, delete_archive and init with real borg on copies of a small repository:
what they report, and that `borg list` agrees."""

from __future__ import annotations

from tests.executor.conftest import Executor, Template, archive_names, borg


async def test_prune_keeping_the_last_reports_kept_and_pruned_and_borg_agrees(
    executor: Executor, template: Template
) -> None:
    repo = executor.copy_of(template)
    job = await executor.run_job(executor.spec("prune", repo, keep_last=1))
    assert job.status == "completed", job.error
    assert job.result is not None
    details = dict(job.result.details)
    # The repository as the prune left it (borg info, borg list, the file system).
    measured = details.pop("repository")
    assert measured["archives"] == 1 and measured["deduplicated_size"] > 0 and measured["disk_free"] > 0
    # t-1 alone held only-in-t1.bin (64 KiB of random data): the next compact frees it
    assert details.pop("deleted_bytes") > 60_000
    assert details == {"kept": ["t-3"], "pruned": ["t-2", "t-1"]}
    assert await archive_names(executor, repo) == ["t-3"]
    # borg's own count: archives pruned of those to prune
    assert job.progress is not None and (job.progress.current, job.progress.total) == (2, 2)
    assert job.progress.deduplicated_size and job.progress.deduplicated_size > 60_000


async def test_a_plans_prune_leaves_other_archives_in_the_repository_alone(
    executor: Executor, template: Template
) -> None:
    repo = executor.copy_of(template)
    rc, _, err = await borg(
        "create",
        "--timestamp=2026-01-09T00:00:00",
        f"{repo.location}::u-1",
        str(template.src / "dir0"),
        data_dir=executor.tmp_path / "me",
    )
    assert rc == 0, err
    plan = executor.plan(repo, [str(template.src)], name="t", archive_name="{plan}-{now}")
    job = await executor.run_job(executor.spec("prune", repo, plan, keep_last=1))
    assert job.status == "completed", job.error
    # u-1 is the newest archive, but not the plan's: it is neither kept nor pruned by the plan's rules
    assert job.result is not None and job.result.details["kept"] == ["t-3"]
    assert job.result.details["pruned"] == ["t-2", "t-1"]
    assert await archive_names(executor, repo) == ["t-3", "u-1"]


async def test_delete_archive_removes_it(executor: Executor, template: Template) -> None:
    repo = executor.copy_of(template)
    job = await executor.run_job(executor.spec("delete_archive", repo, archive="t-2"))
    assert job.status == "completed", job.error
    assert job.result is not None and job.result.details == {"deleted": "t-2"}
    assert await archive_names(executor, repo) == ["t-1", "t-3"]


async def test_deleting_a_missing_archive_fails_as_archive_not_found(executor: Executor, template: Template) -> None:
    repo = executor.copy_of(template)
    job = await executor.run_job(executor.spec("delete_archive", repo, archive="t-9"))
    assert job.status == "failed" and job.error is not None
    assert job.error.kind == "archive_not_found" and job.error.exit_code == 1
    assert job.error.message == "Archive t-9 not found (1/1)."
    assert "pick one from its archive list" in job.error.hint


async def test_compact_after_a_delete_reports_the_space_it_freed(executor: Executor, template: Template) -> None:
    repo = executor.copy_of(template)
    rc, _, err = await borg("delete", f"{repo.location}::t-1", data_dir=executor.tmp_path / "me")
    assert rc == 0, err
    job = await executor.run_job(executor.spec("compact", repo))
    assert job.status == "completed", job.error
    assert job.result is not None
    details = job.result.details
    # t-1 alone held 64 KiB of random data (incompressible): at least that much came back
    assert details["freed_bytes"] >= 64 * 1024 and details["freed"].endswith("kB")
    assert job.progress is not None and job.progress.percent == 100.0


async def test_init_of_an_existing_repository_fails_as_repository_exists(
    executor: Executor, template: Template
) -> None:
    repo = executor.copy_of(template)
    job = await executor.run_job(executor.spec("init", repo, encryption="none"))
    assert job.status == "failed" and job.error is not None
    assert job.error.kind == "repository_exists" and job.error.exit_code == 10
    assert job.error.hint == f"A borg repository already exists at {repo.location}: it needs no init job"
    assert await archive_names(executor, repo) == ["t-1", "t-2", "t-3"]

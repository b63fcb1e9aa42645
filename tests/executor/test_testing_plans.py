"""plugin_test checks a plan without a backup: its databases dump, its scripts are there, its
repository answers; a failure names each part that failed."""

from __future__ import annotations

from pathlib import Path

from shared.events import DatabaseRef
from tests.executor.conftest import Executor, Template, archive_names, job_log
from tests.support.databases import MY, PG, mariadb_database, postgres_database


async def test_a_good_plan_passes_every_check(executor: Executor, template: Template, tmp_path: Path) -> None:
    repo = executor.copy_of(template)
    script = tmp_path / "pre.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    with postgres_database(rows=5) as pg_name, mariadb_database(rows=5) as my_name:
        dbs = [DatabaseRef(database=pg_name, **PG), DatabaseRef(database=my_name, **MY)]  # type: ignore[arg-type]
        plan = executor.plan(
            repo, [str(template.src)], databases=dbs, pre_scripts=[f"{script} --now"], post_scripts=["true"]
        )
        job = await executor.run_job(executor.spec("plugin_test", repo, plan), timeout=60)
    assert job.status == "completed", job.error
    assert job.result is not None and job.result.details == {"checked": 5, "databases": 2}
    log = [line.message for line in job_log(executor, job.id)]
    assert f"database postgresql/{pg_name}: dumps" in log and f"database mysql/{my_name}: dumps" in log
    assert await archive_names(executor, repo, checkpoints=True) == ["t-1", "t-2", "t-3"]  # no backup made


async def test_a_bad_plan_fails_naming_each_part(executor: Executor, template: Template, tmp_path: Path) -> None:
    repo = executor.copy_of(template)
    not_executable = tmp_path / "post.sh"
    not_executable.write_text("#!/bin/sh\n")
    with postgres_database(rows=5) as pg_name:
        dbs = [
            DatabaseRef(database=pg_name, **PG),  # type: ignore[arg-type]
            DatabaseRef(database=pg_name + "_gone", **PG),  # type: ignore[arg-type]
        ]
        plan = executor.plan(
            repo,
            [str(template.src)],
            databases=dbs,
            pre_scripts=[str(tmp_path / "missing.sh")],
            post_scripts=[str(not_executable)],
        )
        job = await executor.run_job(executor.spec("plugin_test", repo, plan), timeout=60)
    assert job.status == "failed" and job.error is not None
    message = job.error.message
    assert message.startswith("3 of 5 checks failed")
    assert f"database postgresql/{pg_name}_gone" in message and "does not exist" in message
    assert f"{tmp_path / 'missing.sh'} does not exist" in message and f"{not_executable} is not executable" in message
    assert job.error.kind == "database_connection" and job.error.hint


async def test_an_unreachable_repository_fails_the_repository_part(executor: Executor, tmp_path: Path) -> None:
    repo = executor.repository("never-made", has_passphrase=False)
    job = await executor.run_job(executor.spec("plugin_test", repo, executor.plan(repo, [str(tmp_path)])))
    assert job.status == "failed" and job.error is not None
    assert job.error.kind == "repository_not_found" and "repository: borg list" in job.error.message

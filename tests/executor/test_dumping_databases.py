"""A plan's databases are dumped into its backup as it runs (through FIFOs, no copy on disk), and a
dump that fails fails the backup and leaves no archive."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest_asyncio

from shared.config import default_borg_bin
from shared.events import DatabaseRef, RepositoryRef
from tests.executor.conftest import Executor, Template, archive_names, borg, eventually, job_log
from tests.support.databases import MY, PG, mariadb_database, postgres_database


@pytest_asyncio.fixture(loop_scope="session")
async def locked_repo(harness: Executor) -> AsyncIterator[RepositoryRef]:
    """A repository whose lock another borg holds: a backup of it never gets to read anything."""
    repo = harness.repository("locked", has_passphrase=False)
    rc, _, err = await borg("init", "--encryption=none", repo.location, data_dir=harness.tmp_path / "me")
    assert rc == 0, err
    env = {**os.environ, "BORG_BASE_DIR": str(harness.tmp_path / "me" / "borg")}
    holder = await asyncio.create_subprocess_exec(
        default_borg_bin(), "with-lock", repo.location, "sleep", "120", env=env, start_new_session=True
    )
    await eventually((Path(repo.location) / "lock.exclusive").exists, what="borg with-lock holding the lock")
    yield repo
    os.killpg(holder.pid, signal.SIGTERM)
    await holder.wait()


def pg(name: str) -> DatabaseRef:
    return DatabaseRef(database=name, **PG)  # type: ignore[arg-type]


def my(name: str) -> DatabaseRef:
    return DatabaseRef(database=name, **MY)  # type: ignore[arg-type]


async def archived(ex: Executor, location: str, archive: str) -> dict[str, int]:
    """Path → size of every file in an archive."""
    rc, out, err = await borg(
        "list", "--format={path} {size}{NL}", f"{location}::{archive}", data_dir=ex.tmp_path / "me"
    )
    assert rc == 0, err
    return {path: int(size) for path, size in (line.rsplit(" ", 1) for line in out.splitlines() if line)}


async def test_a_backup_streams_each_database_dump_into_the_archive_beside_the_paths(
    executor: Executor, template: Template, tmp_path: Path
) -> None:
    repo = executor.copy_of(template)
    with postgres_database() as pg_name, mariadb_database() as my_name:
        plan = executor.plan(repo, [str(template.src)], databases=[pg(pg_name), my(my_name)])
        job = await executor.run_job(executor.spec("backup", repo, plan), timeout=60)
        assert job.status == "completed", job.error
        assert job.result is not None and job.result.archive is not None
        files = await archived(executor, repo.location, job.result.archive)
        pg_path, my_path = f"borgflow-dumps/postgresql/{pg_name}.dump", f"borgflow-dumps/mysql/{my_name}.dump"
        assert files[pg_path] > 1000 and files[my_path] > 1000
        assert job.result.details["dumps"] == {pg_path: files[pg_path], my_path: files[my_path]}
        assert any(p.endswith("src/dir0/file0.txt") for p in files)  # the plan's paths are there too


async def test_a_dump_that_fails_fails_the_backup_and_leaves_no_archive(
    executor: Executor, template: Template, tmp_path: Path
) -> None:
    repo = executor.copy_of(template)
    with postgres_database() as pg_name:
        missing = pg_name + "_missing"
        plan = executor.plan(repo, [str(template.src)], databases=[pg(pg_name), pg(missing)])
        job = await executor.run_job(executor.spec("backup", repo, plan), timeout=60)
    assert job.status == "failed" and job.error is not None
    assert job.error.kind == "dump_failed"
    assert f'database "{missing}" does not exist' in job.error.message  # the server's own words
    assert "plugin_test" in job.error.hint
    assert await archive_names(executor, repo, checkpoints=True) == ["t-1", "t-2", "t-3"]
    assert any("deleted archive" in line.message for line in job_log(executor, job.id))
    assert job.result is None or job.result.archive is None  # nothing for a retry to find


async def test_a_dump_of_an_unreachable_server_fails_the_backup_without_hanging_borg(
    executor: Executor, template: Template
) -> None:
    repo = executor.copy_of(template)
    nowhere = DatabaseRef(kind="postgresql", host="127.0.0.1", port=1, user="postgres", database="x")
    plan = executor.plan(repo, [str(template.src)], databases=[nowhere])
    job = await executor.run_job(executor.spec("backup", repo, plan), timeout=60)
    assert job.status == "failed" and job.error is not None and job.error.kind == "dump_failed"
    assert "postgresql database x on 127.0.0.1:1 (user postgres)" in job.error.message
    assert "Connection refused" in job.error.message  # pg_dump's own words
    assert await archive_names(executor, repo, checkpoints=True) == ["t-1", "t-2", "t-3"]


async def test_a_borg_that_never_reads_the_dumps_neither_hangs_nor_leaves_them_running(
    executor: Executor, locked_repo: RepositoryRef, tmp_path: Path
) -> None:
    # More rows than a pipe holds: the dump blocks on its output until somebody reads it.
    with postgres_database(rows=50_000) as pg_name:
        plan = executor.plan(locked_repo, [str(tmp_path)], databases=[pg(pg_name)])
        job = await executor.run_job(executor.spec("backup", locked_repo, plan, lock_wait=1), timeout=60)
        assert job.status == "failed" and job.error is not None
        assert job.error.kind == "lock_timeout"  # borg's own failure is the job's: the dump only never ran out
        assert not [p for p in psutil.process_iter(["cmdline"]) if f"--dbname={pg_name}" in (p.info["cmdline"] or [])]
        assert any("was not read by borg" in line.message for line in job_log(executor, job.id))

"""restore_pg and restore_mysql stream a dump out of an archive into a target database (made when
missing), and say which side failed when one does."""

from __future__ import annotations

import asyncio
import os
import signal

import psutil

from shared import bus
from shared import events as ev
from shared.events import DatabaseRef
from tests.executor.conftest import Executor, Template, eventually, job_log, job_progress
from tests.support.databases import (
    MY,
    PG,
    drop_mariadb,
    drop_postgres,
    mariadb,
    mariadb_database,
    mariadb_rows,
    postgres_database,
    postgres_rows,
    psql,
    unique,
)


async def test_dumps_restore_into_new_databases_with_the_same_rows(executor: Executor, template: Template) -> None:
    repo = executor.copy_of(template)
    with postgres_database() as pg_name, mariadb_database() as my_name:
        dbs = [DatabaseRef(database=pg_name, **PG), DatabaseRef(database=my_name, **MY)]  # type: ignore[arg-type]
        plan = executor.plan(repo, [str(template.src)], databases=dbs)
        backup = await executor.run_job(executor.spec("backup", repo, plan), timeout=60)
        assert backup.status == "completed" and backup.result is not None, backup.error
        archive = backup.result.archive
        pg_copy, my_copy = unique("pgcopy"), unique("mycopy")
        try:
            target = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "database": pg_copy}
            job = await executor.run_job(
                executor.spec("restore_pg", repo, archive=archive, database=pg_name, target=target), timeout=60
            )
            assert job.status == "completed", job.error
            assert job.result is not None and job.result.details["created"] is True
            assert (
                job.result.details["bytes_restored"]
                == backup.result.details["dumps"][f"borgflow-dumps/postgresql/{pg_name}.dump"]
            )
            assert postgres_rows(pg_copy) == postgres_rows(pg_name)
            last = job_progress(executor, job.id)[-1]
            assert last.current == job.result.details["bytes_restored"] and last.total == last.current

            target = {"host": "127.0.0.1", "port": 3306, "user": "root", "database": my_copy}
            job = await executor.run_job(
                executor.spec("restore_mysql", repo, archive=archive, database=my_name, target=target), timeout=60
            )
            assert job.status == "completed", job.error
            assert mariadb_rows(my_copy) == mariadb_rows(my_name)
        finally:
            drop_postgres(pg_copy)
            drop_mariadb(my_copy)


async def test_a_restore_says_which_side_failed(executor: Executor, template: Template) -> None:
    repo = executor.copy_of(template)
    target = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "database": unique("never")}
    # The archive side: t-1 holds files, no dump.
    job = await executor.run_job(executor.spec("restore_pg", repo, archive="t-1", database="app", target=target))
    assert job.status == "failed" and job.error is not None
    assert job.error.kind == "dump_not_found" and "the archive side failed" in job.error.message
    assert "borgflow-dumps/postgresql/app.dump" in job.error.message
    job = await executor.run_job(executor.spec("restore_pg", repo, archive="nope", database="app", target=target))
    assert job.error is not None and job.error.kind == "archive_not_found"
    assert "the archive side failed" in job.error.message

    # The target side: nobody listens there.
    with postgres_database(rows=5) as pg_name:
        dbs = [DatabaseRef(database=pg_name, **PG)]  # type: ignore[arg-type]
        backup = await executor.run_job(
            executor.spec("backup", repo, executor.plan(repo, [str(template.src)], databases=dbs)), timeout=60
        )
    assert backup.result is not None
    nowhere = target | {"port": 1}
    job = await executor.run_job(
        executor.spec("restore_pg", repo, archive=backup.result.archive, database=pg_name, target=nowhere)
    )
    assert job.status == "failed" and job.error is not None
    assert job.error.kind == "database_connection" and "the target side failed" in job.error.message
    assert "pg_hba.conf" in job.error.hint

    # The target side: a user who may not create the database.
    role = unique("nopriv")
    psql(f'CREATE ROLE "{role}" LOGIN NOCREATEDB')
    try:
        job = await executor.run_job(
            executor.spec(
                "restore_pg", repo, archive=backup.result.archive, database=pg_name, target=target | {"user": role}
            )
        )
    finally:
        psql(f'DROP ROLE "{role}"')
    assert job.status == "failed" and job.error is not None
    assert job.error.kind == "database_privileges", job.error
    assert "permission denied to create database" in job.error.message and "privilege" in job.error.hint


async def test_a_cancelled_restore_stops_both_sides(executor: Executor, template: Template) -> None:
    repo = executor.copy_of(template)
    with mariadb_database(rows=5) as my_name:
        dbs = [DatabaseRef(database=my_name, **MY)]  # type: ignore[arg-type]
        backup = await executor.run_job(
            executor.spec("backup", repo, executor.plan(repo, [str(template.src)], databases=dbs)), timeout=60
        )
        assert backup.result is not None and backup.result.archive is not None
        # A transaction of another session has read the target's table: the restore's DROP TABLE
        # waits for it (a metadata lock), with the dump already on its way.
        holder = await asyncio.create_subprocess_exec(
            "mariadb", "-h", "127.0.0.1", "-P", "3306", "-u", "root", my_name,
            "-e", "START TRANSACTION; SELECT count(*) FROM items; SELECT SLEEP(120);",
            stdout=asyncio.subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            await eventually(lambda: "SLEEP(120)" in mariadb("SHOW PROCESSLIST"), what="the reader holding the table")
            target = {"host": "127.0.0.1", "port": 3306, "user": "root", "database": my_name}
            spec = executor.spec("restore_mysql", repo, archive=backup.result.archive, database=my_name, target=target)
            await executor.send(spec)
            await eventually(
                lambda: any(line.message.startswith("starting ") and "extract" in line.message
                            for line in job_log(executor, spec.id)),
                what="the restore streaming",
            )  # fmt: skip
            last = await bus.last_job_seq(executor.js, spec.id)
            cancel = ev.JobCancelRequested(job_id=spec.id, data=ev.CancelRequestedData(by="alice"))
            await bus.publish(executor.js, cancel, expect_last_seq=last)
            job = await executor.outcome(spec.id, timeout=30)
        finally:
            os.killpg(holder.pid, signal.SIGTERM)
            await holder.wait()
    assert job.status == "cancelled" and job.error is not None and job.error.kind == "cancelled_by_user"
    assert not [p for p in psutil.process_iter(["cmdline"]) if f"--database={my_name}" in (p.info["cmdline"] or [])]

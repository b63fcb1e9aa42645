"""Jobs run with real borg on tiny repositories: outcomes, progress, logs, and where the
passphrase may and may not go."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import msgspec
import pytest

from shared.events import JobLog, JobProgress, decode
from shared.streams import AGENTS, JOBS, LOGS, PROGRESS
from shared.version import VERSION
from tests.executor.conftest import (
    PASSPHRASE,
    TOKEN,
    Executor,
    borg,
    job_types,
    stream_messages,
)


async def test_init_then_backup_completes_and_the_archive_is_in_the_repository(
    executor: Executor, source: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    repo = executor.repository()
    init = await executor.run_job(executor.spec("init", repo))
    assert init.status == "completed", init.error
    assert init.result is not None and init.result.exit_code == 0
    assert init.pid is not None and init.pid_started_at is not None and init.borg_version

    plan = executor.plan(repo, [str(source)])
    backup = await executor.run_job(executor.spec("backup", repo, plan))
    assert backup.status == "completed", backup.error
    result = backup.result
    assert result is not None and result.exit_code == 0
    assert result.archive is not None and result.archive.startswith("daily-") and backup.archive == result.archive
    assert result.stats["nfiles"] == 31  # 30 text files and big.bin; scratch.tmp is excluded
    assert set(result.stats) == {
        "nfiles",
        "original_size",
        "compressed_size",
        "deduplicated_size",
        "duration",
        # Its own rates (shared/insight.backup_rates).
        "read_bytes_per_s",
        "transfer_bytes_per_s",
        "dedup_hit_rate",
        "compression_ratio",
    }
    assert result.details["repository"]["archives"] == 1  # the repository as the backup left it
    assert (
        backup.progress is not None
        and backup.progress.nfiles == 31
        and backup.progress.archive == result.archive
        and backup.progress.action == "finished"
    )

    # borg itself, with the passphrase, sees the archive
    rc, out, err = await borg("list", "--json", repo.location, data_dir=executor.tmp_path / "me", passphrase=PASSPHRASE)
    assert rc == 0, err
    assert [a["name"] for a in json.loads(out)["archives"]] == [result.archive]

    # the secret was asked for with the agent's token, once per job that needed it
    assert executor.secrets.requests == [(init.id, True), (backup.id, True)]

    # progress and log events were published for the backup
    progress = [decode(m.data) for m in executor.seen if m.subject == f"borgflow.progress.{backup.id}"]
    assert progress and all(isinstance(p, JobProgress) for p in progress)
    last = progress[-1]
    assert isinstance(last, JobProgress) and last.data == backup.progress
    logs = [decode(m.data) for m in executor.seen if m.subject == f"borgflow.logs.{backup.id}"]
    lines = [line for log in logs if isinstance(log, JobLog) for line in log.data.lines]
    executor_lines = [line.message for line in lines if line.source == "executor"]
    assert any(m.startswith("starting ") and " create " in m for m in executor_lines)
    assert any(m.startswith("borg exited with 0") for m in executor_lines)
    init_logs = [decode(m.data) for m in executor.seen if m.subject == f"borgflow.logs.{init.id}"]
    init_lines = [line for log in init_logs if isinstance(log, JobLog) for line in log.data.lines]
    assert any(line.source == "borg" and "KEY AND PASSPHRASE" in line.message for line in init_lines)

    # the passphrase is nowhere: not in any message published, not in any stream, not in our logs
    await executor.halt()
    for msg in executor.seen:
        assert PASSPHRASE.encode() not in msg.data, msg.subject
    streams = [info.config.name for info in await executor.js.streams_info()]
    assert {JOBS, PROGRESS, LOGS, AGENTS} <= set(streams)
    for stream in streams:
        assert stream is not None
        for data in await stream_messages(executor.js, stream):
            assert PASSPHRASE.encode() not in data, stream
    for record in caplog.records:
        assert PASSPHRASE not in record.getMessage()
        assert PASSPHRASE not in repr(record.__dict__)


async def test_wrong_passphrase_fails_with_a_hint_to_update_it(executor: Executor, source: Path) -> None:
    repo = executor.repository()
    assert (await executor.run_job(executor.spec("init", repo))).status == "completed"
    executor.repo_passphrases[repo.id] = "not the passphrase"
    job = await executor.run_job(executor.spec("backup", repo, executor.plan(repo, [str(source)])))
    assert job.status == "failed" and job.error is not None
    assert job.error.kind == "passphrase"
    assert job.error.exit_code == 52
    assert "incorrect" in job.error.message and "not the passphrase" not in job.error.message
    assert job.error.hint == f"The repository passphrase is wrong: update it with PUT /api/repositories/{repo.id}"


async def test_missing_repository_fails_as_repository_not_found(executor: Executor, source: Path) -> None:
    repo = executor.repository("nowhere", has_passphrase=False)
    job = await executor.run_job(executor.spec("backup", repo, executor.plan(repo, [str(source)])))
    assert job.status == "failed" and job.error is not None
    assert job.error.kind == "repository_not_found" and job.error.exit_code == 13
    assert job.error.hint == f"No borg repository at {repo.location}: run an init job first or fix the location"
    assert executor.secrets.requests == []  # no passphrase: nothing asked


@pytest.mark.parametrize(
    ("token", "status"),
    [(TOKEN, 404), ("a token the api does not know", 401)],
    ids=["job unknown to the api", "wrong token"],
)
async def test_an_unavailable_secret_fails_before_borg_runs(
    harness: Executor, source: Path, token: str, status: int
) -> None:
    harness.settings = msgspec.structs.replace(harness.settings, token=token)
    harness.start()
    repo = harness.repository()
    spec = harness.spec("backup", repo, harness.plan(repo, [str(source)]))
    if status == 404:
        del harness.secrets.passphrases[spec.id]
    job = await harness.run_job(spec)
    assert job.status == "failed" and job.error is not None
    assert job.error.kind == "secret_unavailable"
    assert f"answered {status}" in job.error.message and "BORGFLOW_TOKEN" in job.error.hint
    assert harness.secrets.requests == [(spec.id, status == 404)]  # a refusal is not retried
    log_text = "".join(m.data.decode() for m in harness.seen if m.subject == f"borgflow.logs.{spec.id}")
    assert "starting " not in log_text  # borg never started


async def test_a_missing_borg_fails_as_borg_missing(harness: Executor, source: Path) -> None:
    harness.settings = msgspec.structs.replace(harness.settings, borg_bin=str(harness.tmp_path / "no-borg-here"))
    harness.start()
    repo = harness.repository(has_passphrase=False)
    job = await harness.run_job(harness.spec("init", repo, encryption="none"))
    assert job.status == "failed" and job.error is not None
    assert job.error.kind == "borg_missing" and "BORGFLOW_BORG" in job.error.hint


async def test_jobs_this_executor_cannot_run_fail_as_bad_options(executor: Executor) -> None:
    repo = executor.repository(has_passphrase=False)
    job = await executor.run_job(executor.spec("mount", repo))
    assert job.status == "failed" and job.error is not None
    assert job.error.kind == "bad_options"
    assert job.error.message == "job type mount is not supported by this executor yet"
    assert await job_types(executor.js, job.id) == ["job.queued", "job.sent", "job.started", "job.failed"]


async def test_ping_answers_with_host_facts_without_borg(executor: Executor) -> None:
    job = await executor.run_job(executor.spec("ping"))
    assert job.status == "completed" and job.result is not None
    details = job.result.details
    assert set(details) == {"agent", "host", "borg_version", "borg", "python_version", "borgflow_version"}
    assert details["agent"] == "a1" and details["borg_version"] == job.borg_version
    assert details["borgflow_version"] == VERSION


async def test_progress_stream_keeps_the_final_progress(executor: Executor, source: Path) -> None:
    repo = executor.repository(has_passphrase=False)
    await executor.run_job(executor.spec("init", repo, encryption="none"))
    job = await executor.run_job(executor.spec("backup", repo, executor.plan(repo, [str(source)])))
    last = await executor.js.get_last_msg(PROGRESS, f"borgflow.progress.{job.id}")
    event = decode(last.data or b"")
    assert isinstance(event, JobProgress) and event.data == job.progress

"""A backup's sources are checked on the agent before borg runs, and its percent and ETA
come from the plan's previous backup."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from shared.events import Estimate
from tests.executor.conftest import Executor, Template, archive_names, job_log, job_progress


async def test_a_backup_whose_paths_are_all_missing_fails_and_borg_never_runs(
    executor: Executor, template: Template, tmp_path: Path
) -> None:
    repo = executor.copy_of(template)
    gone = [str(tmp_path / "gone"), str(tmp_path / "also-gone")]
    job = await executor.run_job(executor.spec("backup", repo, executor.plan(repo, gone)))
    assert job.status == "failed" and job.error is not None
    assert job.error.kind == "source_not_found"
    assert all(path in job.error.message for path in gone)
    assert "Fix the plan's paths" in job.error.hint and "agent a1" in job.error.hint
    assert not any(line.message.startswith("starting ") for line in job_log(executor, job.id))
    assert await archive_names(executor, repo, checkpoints=True) == ["t-1", "t-2", "t-3"]  # no empty archive


async def test_a_backup_with_some_paths_missing_backs_up_the_rest_and_warns(
    executor: Executor, template: Template, tmp_path: Path
) -> None:
    repo = executor.copy_of(template)
    gone = str(tmp_path / "gone")
    job = await executor.run_job(executor.spec("backup", repo, executor.plan(repo, [gone, str(template.src)])))
    assert job.status == "warning" and job.error is None
    result = job.result
    assert result is not None and result.exit_code == 0
    assert result.warnings == [f"source path {gone} does not exist on agent a1"]
    assert result.details["missing_paths"] == [gone]
    assert result.details["sources"] == {"paths": [gone, str(template.src)], "exclude": ["*.tmp"]}
    assert result.archive is not None and result.stats["nfiles"] > 30
    assert (await archive_names(executor, repo))[-1] == result.archive
    started = next(line.message for line in job_log(executor, job.id) if line.message.startswith("starting "))
    assert started.endswith(f" {template.src}") and gone not in started


async def test_a_backup_with_an_estimate_reports_percent_and_eta(
    harness: Executor, template: Template, tmp_path: Path
) -> None:
    # Every progress line published (no throttle), and a backup slow enough for borg to
    # report several times while it reads (it does every 0.2 s): zstd,10 on random data
    # runs at a few tens of MB/s here, lz4 would finish 32 MB before its second report.
    harness.options = msgspec.structs.replace(harness.options, progress_interval_s=0.0)
    harness.start()
    src = tmp_path / "data"
    src.mkdir()
    for n in range(4):
        (src / f"random{n}.bin").write_bytes(os.urandom(8 << 20))
    repo = harness.copy_of(template)
    plan = harness.plan(repo, [str(src)], compression="zstd,10")
    estimate = Estimate(original_size=2 * (32 << 20), nfiles=8, duration_s=2.0)
    job = await harness.run_job(harness.spec("backup", repo, plan, estimate=estimate))
    assert job.status == "completed", job.error
    running = [p for p in job_progress(harness, job.id)[:-1] if p.original_size is not None]
    assert running and all(p.percent is not None and p.percent <= 50.0 and p.estimated for p in running)
    assert any(p.eta_s is not None and p.eta_s > 0 and (p.percent or 0) > 0 for p in running)
    assert job.progress is not None and (job.progress.percent, job.progress.eta_s) == (100.0, 0.0)


async def test_a_backup_past_its_estimate_drops_the_percent_instead_of_pinning_it(
    harness: Executor, template: Template, tmp_path: Path
) -> None:
    # The folder held 8 MiB when the estimate's archive was made; it now holds 32 MiB.
    harness.options = msgspec.structs.replace(harness.options, progress_interval_s=0.0)
    harness.start()
    src = tmp_path / "grown"
    src.mkdir()
    for n in range(4):
        (src / f"random{n}.bin").write_bytes(os.urandom(8 << 20))
    repo = harness.copy_of(template)
    plan = harness.plan(repo, [str(src)], compression="zstd,10")
    estimate = Estimate(original_size=8 << 20, nfiles=1, paths=[str(src)], exclude=[])
    job = await harness.run_job(harness.spec("backup", repo, plan, estimate=estimate))
    assert job.status == "completed", job.error
    running = [p for p in job_progress(harness, job.id)[:-1] if p.original_size is not None]
    past = [p for p in running if p.original_size is not None and p.original_size >= 8 << 20]
    assert past and all(p.percent is None and p.eta_s is None and not p.estimated for p in past)
    assert all(p.percent is None or p.percent < 99 for p in running)
    assert job.progress is not None and job.progress.percent is None  # never made up, not even at the end


async def test_a_backup_without_an_estimate_has_no_percent(executor: Executor, template: Template) -> None:
    repo = executor.copy_of(template)
    job = await executor.run_job(executor.spec("backup", repo, executor.plan(repo, [str(template.src)])))
    assert job.status == "completed", job.error
    assert all(p.percent is None and p.eta_s is None for p in job_progress(executor, job.id))


async def test_a_backup_whose_archive_name_is_taken_tries_the_next_name(
    executor: Executor, template: Template, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two backups of one plan ending within the same second fill {now} alike; a frozen
    # clock makes that certain instead of likely.
    frozen = datetime(2026, 12, 2, 4, 0, 0, tzinfo=UTC)
    monkeypatch.setattr("services.executor.runner.utcnow", lambda: frozen)
    repo = executor.copy_of(template)
    plan = executor.plan(repo, [str(template.src)])
    first = await executor.run_job(executor.spec("backup", repo, plan))
    second = await executor.run_job(executor.spec("backup", repo, plan))
    assert first.status == second.status == "completed", (first.error, second.error)
    assert first.result is not None and second.result is not None
    assert second.result.archive == f"{first.result.archive}.2"
    assert (await archive_names(executor, repo))[-2:] == [first.result.archive, second.result.archive]
    assert any("already exists" in line.message for line in job_log(executor, second.id))

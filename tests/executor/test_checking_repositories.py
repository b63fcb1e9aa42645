"""check with real borg: full, repository-only and time-boxed checks complete with a
percent and a verdict per archive (OK) when archives were checked; a damaged segment file
fails the check as `integrity` with a repair hint, and the archive using it reads CORRUPT
or MISSING."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.executor.conftest import Executor, Template, job_log, job_progress


@pytest.mark.parametrize(
    ("options", "flags", "partial"),
    [
        ({}, "check --log-json --progress --info --", False),
        ({"repository_only": True}, "check --log-json --progress --info --repository-only --", False),
        # borg needs --repository-only with --max-duration: the executor adds it
        ({"max_duration": 30}, "check --log-json --progress --info --repository-only --max-duration=30 --", True),
    ],
    ids=["full", "repository_only", "max_duration"],
)
async def test_a_check_of_a_healthy_repository_completes_with_a_percent(
    executor: Executor, template: Template, options: dict[str, Any], flags: str, partial: bool
) -> None:
    repo = executor.copy_of(template)
    job = await executor.run_job(executor.spec("check", repo, **options))
    assert job.status == "completed", job.error
    assert job.result is not None
    details = dict(job.result.details)
    verdicts = details.pop("verification", None)
    details.pop("verify_data", None)
    assert details == {"problems": [], "partial": partial}
    if options:  # repository-only: no archive was checked, so none has a verdict
        assert verdicts is None
    else:
        assert [(v["archive"], v["result"]) for v in verdicts] == [(a, "OK") for a in template.archives]
    assert job.progress is not None and job.progress.percent == 100.0 and job.progress.action == "finished"
    first = job_progress(executor, job.id)[0]  # published at once, while borg checked
    assert first.percent is not None and first.action is not None and first.action.startswith("Checking")
    log = [line.message for line in job_log(executor, job.id)]
    assert any(m.startswith("starting ") and f" {flags} {repo.location}" in m for m in log)
    assert any("no problems found" in m for m in log)


async def test_a_damaged_segment_fails_the_check_as_integrity(executor: Executor, template: Template) -> None:
    repo = executor.copy_of(template)
    segments = sorted((Path(repo.location) / "data" / "0").iterdir(), key=lambda p: p.stat().st_size)
    biggest = segments[-1]  # the one holding file data
    with biggest.open("r+b") as f:
        f.seek(biggest.stat().st_size // 2)
        f.write(b"\xff" * 64)
    job = await executor.run_job(executor.spec("check", repo))
    assert job.status == "failed" and job.error is not None
    assert job.error.kind == "integrity" and job.error.exit_code == 1
    assert job.error.message.startswith("borg check found damage") and "checksum mismatch" in job.error.message
    assert f"borg check --repair {repo.location}" in job.error.hint
    assert job.result is not None and job.result.details["partial"] is False
    problems = job.result.details["problems"]
    assert any("Segment entry checksum mismatch" in p for p in problems)
    assert problems[-1] == "Finished full repository check, errors found."
    verdicts = {v["archive"]: v for v in job.result.details["verification"]}
    assert set(verdicts) == set(template.archives)
    # t-1 alone holds only-in-t1.bin, so the biggest segment is the one it wrote
    assert verdicts["t-1"]["result"] in ("CORRUPT", "MISSING"), verdicts
    assert "restore what you need from an archive" in job.error.hint


async def test_one_archive_is_checked_with_its_data(executor: Executor, template: Template) -> None:
    repo = executor.copy_of(template)
    job = await executor.run_job(executor.spec("check", repo, archives=["t-2"], verify_data=True))
    assert job.status == "completed", job.error
    assert job.result is not None
    assert job.result.details["verification"] == [
        {"archive": "t-2", "result": "OK", "detail": "archive consistency checked and all data read back"}
    ]

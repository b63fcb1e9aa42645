"""A plan's pre- and post-scripts: run without a shell, with a timeout and the job's
context in their environment (never a secret), their output in the job's log."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import msgspec
import pytest

from services.executor.hooks import HookResult, hook_environment, run_hook
from shared.events import JobSpec, PlanRef, Progress, RepositoryRef, utcnow
from tests.executor.conftest import Executor, Template, archive_names, job_log

REPO = RepositoryRef(id="r1", name="main", location="/srv/repo", agent="a1", has_passphrase=True)
PLAN = PlanRef(id="p1", name="daily", repository_id="r1")


class Lines:
    """An Output that keeps what it is given."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, str]] = []

    def line(self, message: str, *, level: str = "info", source: str = "borg") -> None:
        self.lines.append((message, level, source))

    def progress(self, progress: Progress) -> None:
        pass


def test_scripts_get_the_jobs_context_and_no_secret() -> None:
    inherited = {
        "PATH": "/usr/bin",
        "PGHOST": "db.internal",
        "BORG_PASSPHRASE": "operator's own",
        "BORG_PASSCOMMAND": "cat /secret",
        "BORGFLOW_TOKEN": "agent-token",
        "BORGFLOW_DATABASE_URL": "postgresql://u:pw@db/borgflow",
    }
    spec = JobSpec(id="j1", type="backup", agent="a1", created_at=utcnow(), repository=REPO, plan=PLAN)
    pre = hook_environment(inherited, spec, "a1", archive="daily-2026-11-23T16:20:05")
    assert pre == {
        "PATH": "/usr/bin",
        "PGHOST": "db.internal",
        "BORGFLOW_JOB_ID": "j1",
        "BORGFLOW_JOB_TYPE": "backup",
        "BORGFLOW_AGENT": "a1",
        "BORGFLOW_REPOSITORY": "/srv/repo",
        "BORGFLOW_REPOSITORY_NAME": "main",
        "BORGFLOW_PLAN": "daily",
        "BORGFLOW_ARCHIVE": "daily-2026-11-23T16:20:05",
    }
    post = hook_environment(inherited, spec, "a1", archive="x", status="failed", exit_code=52)
    assert post["BORGFLOW_STATUS"] == "failed" and post["BORGFLOW_EXIT_CODE"] == "52"
    no_borg = hook_environment(inherited, spec, "a1", status="failed")
    assert no_borg["BORGFLOW_EXIT_CODE"] == "" and "BORGFLOW_ARCHIVE" not in no_borg


@pytest.mark.parametrize(
    ("command", "timeout_s", "ok", "exit_code", "problem", "lines"),
    [
        ("echo 'hello  there'", 5.0, True, 0, "", [("hello  there", "info", "hook")]),
        (
            f"{sys.executable} -c \"import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)\"",
            5.0,
            False,
            3,
            "exited with 3",
            [("out", "info", "hook"), ("err", "warning", "hook")],
        ),
        # no shell: a pipe or a variable is just an argument
        ("echo $HOME | wc", 5.0, True, 0, "", [("$HOME | wc", "info", "hook")]),
        ("/no/such/script --now", 5.0, False, None, "could not start: No such file or directory", []),
        ("sleep 30", 0.2, False, 143, "timed out after 0.2s", []),
        ("echo 'unbalanced", 5.0, False, None, "cannot be split into arguments: No closing quotation", []),
        ("   ", 5.0, False, None, "is empty", []),
    ],
    ids=["ok", "exit_code", "no_shell", "not_found", "timeout", "bad_quotes", "empty"],
)
async def test_running_one_script(
    command: str, timeout_s: float, ok: bool, exit_code: int | None, problem: str, lines: list[tuple[str, str, str]]
) -> None:
    out = Lines()
    done = await run_hook(command, {"PATH": "/usr/bin:/bin", "HOME": "/nowhere"}, out, timeout_s=timeout_s)
    assert done == HookResult(command=command, ok=ok, exit_code=exit_code, problem=problem)
    assert sorted(out.lines) == sorted(lines)


async def test_a_cancel_stops_a_running_script() -> None:
    cancel = asyncio.Event()
    task = asyncio.create_task(run_hook("sleep 30", {"PATH": "/usr/bin:/bin"}, Lines(), timeout_s=30, cancel=cancel))
    await asyncio.sleep(0)  # let the script start; the cancel is what we wait on, not time
    cancel.set()
    done = await asyncio.wait_for(task, 5)
    assert done.cancelled and not done.ok and done.problem == "was cancelled"


async def test_a_failing_pre_script_fails_the_job_and_borg_never_runs(
    executor: Executor, template: Template, tmp_path: Path
) -> None:
    repo = executor.copy_of(template)
    post_out = tmp_path / "post.txt"
    plan = executor.plan(
        repo,
        [str(template.src)],
        pre_scripts=["echo first ok", "sh -c 'echo dumping the database; echo no space >&2; exit 3'"],
        post_scripts=[f"sh -c 'echo $BORGFLOW_STATUS > {post_out}'"],
    )
    job = await executor.run_job(executor.spec("backup", repo, plan))
    assert job.status == "failed" and job.error is not None
    assert job.error.kind == "hook_failed" and job.error.exit_code == 3
    assert job.error.message == (
        "pre-script `sh -c 'echo dumping the database; echo no space >&2; exit 3'` exited with 3; borg did not run"
    )
    assert "Fix the plan's pre-script" in job.error.hint
    log = job_log(executor, job.id)
    assert [(line.message, line.level) for line in log if line.source == "hook"] == [
        ("first ok", "info"),
        ("dumping the database", "info"),
        ("no space", "warning"),
    ]
    assert not any(line.message.startswith("starting ") for line in log)
    assert await archive_names(executor, repo, checkpoints=True) == ["t-1", "t-2", "t-3"]
    assert post_out.read_text() == "failed\n"  # post-scripts run after a failure too


async def test_scripts_around_an_encrypted_backup_get_its_context_and_their_output_is_in_the_log(
    executor: Executor, source: Path
) -> None:
    repo = executor.repository()
    assert (await executor.run_job(executor.spec("init", repo))).status == "completed"
    show = "sh -c 'echo $0 status=$BORGFLOW_STATUS code=$BORGFLOW_EXIT_CODE job=$BORGFLOW_JOB_ID $BORGFLOW_ARCHIVE'"
    secrets = "sh -c 'env | grep -c -e BORG_PASSPHRASE -e BORGFLOW_TOKEN -e BORG_BASE_DIR || true'"
    plan = executor.plan(repo, [str(source)], pre_scripts=[f"{show} pre", secrets], post_scripts=[f"{show} post"])
    job = await executor.run_job(executor.spec("backup", repo, plan))
    assert job.status == "completed", job.error
    assert job.result is not None and job.result.archive
    hook_lines = [line.message for line in job_log(executor, job.id) if line.source == "hook"]
    assert hook_lines == [
        f"pre status= code= job={job.id} {job.result.archive}",
        "0",  # neither the passphrase, nor the agent's token, nor borg's settings
        f"post status=completed code=0 job={job.id} {job.result.archive}",
    ]


async def test_a_failing_post_script_turns_a_completed_backup_into_a_warning(
    executor: Executor, template: Template
) -> None:
    repo = executor.copy_of(template)
    plan = executor.plan(repo, [str(template.src)], post_scripts=["false"])
    job = await executor.run_job(executor.spec("backup", repo, plan))
    assert job.status == "warning" and job.error is None
    assert job.result is not None and job.result.archive is not None
    assert job.result.warnings == ["post-script `false` exited with 1"]
    assert any(
        line.message == "post-script `false` exited with 1" and line.level == "warning"
        for line in job_log(executor, job.id)
    )


async def test_a_chained_prune_carrying_the_plan_runs_none_of_its_scripts(
    executor: Executor, template: Template, tmp_path: Path
) -> None:
    repo = executor.copy_of(template)
    ran = tmp_path / "ran"
    # The backup's scripts (say, a database dump) are the backup's: not its chained prune's.
    plan = executor.plan(
        repo, [str(template.src)], name="t", pre_scripts=[f"touch {ran}"], post_scripts=[f"touch {ran}"]
    )
    spec = msgspec.structs.replace(executor.spec("prune", repo, plan, keep_last=1), trigger="chain")
    job = await executor.run_job(spec)
    assert job.status == "completed", job.error
    assert not ran.exists()
    assert not [line for line in job_log(executor, job.id) if line.source == "hook" or "script" in line.message]

"""borg command lines and environment per job type: argument lists, no secrets, no shell."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from services.executor.commands import (
    archive_name,
    borg_environment,
    build,
    delete_archives_command,
    glob_escape,
    is_local,
    list_checkpoints_command,
)
from services.executor.config import ExecutorOptions, options_from_env
from services.executor.exceptions import BadJob
from shared.events import JobSpec, PlanRef, RepositoryRef

NOW = datetime(2026, 11, 23, 16, 20, 5, 123000, tzinfo=UTC)
REPO = RepositoryRef(id="r1", name="main", location="/srv/repo", agent="a1", has_passphrase=True)
PLAN = PlanRef(
    id="p1",
    name="daily",
    repository_id="r1",
    paths=["/etc", "-odd dir"],
    exclude=["*.tmp", "--pattern-looking"],
    compression="zstd,3",
    archive_name="{plan}-{now}-{hostname}",
)


def spec(
    type_: str,
    *,
    repo: RepositoryRef | None = REPO,
    plan: PlanRef | None = None,
    archive: str | None = None,
    **options: Any,
) -> JobSpec:
    return JobSpec(
        id="j1", type=type_, agent="a1", created_at=NOW, repository=repo, plan=plan, archive=archive, options=options
    )


def test_archive_name_fills_plan_and_now_and_leaves_borgs_placeholders() -> None:
    assert archive_name("{plan}-{now}-{hostname}", "daily", NOW) == "daily-2026-11-23T16:20:05-{hostname}"


def test_backup_is_borg_create_with_values_that_cannot_pass_for_options() -> None:
    inv = build(spec("backup", plan=PLAN), borg="/usr/bin/borg", now=NOW)
    assert inv.argv == [
        "/usr/bin/borg",
        "create",
        "--log-json",
        "--progress",
        "--json",
        "--compression=zstd,3",
        "--exclude=*.tmp",
        "--exclude=--pattern-looking",
        "--",
        "/srv/repo::daily-2026-11-23T16:20:05-{hostname}",
        "/etc",
        "-odd dir",
    ]
    assert inv.archive == "daily-2026-11-23T16:20:05-{hostname}"


@pytest.mark.parametrize(
    ("options", "encryption"),
    [
        ({}, "repokey-blake2"),
        ({"encryption": "repokey"}, "repokey"),
        ({"encryption": "keyfile-blake2"}, "keyfile-blake2"),
    ],
)
def test_init_uses_the_requested_encryption(options: dict[str, Any], encryption: str) -> None:
    inv = build(spec("init", **options), borg="borg", now=NOW)
    assert inv.argv == ["borg", "init", f"--encryption={encryption}", "--log-json", "--", "/srv/repo"]
    assert inv.archive is None


def test_init_without_encryption_needs_no_passphrase() -> None:
    repo = RepositoryRef(id="r2", name="plain", location="/srv/plain", agent="a1")
    inv = build(spec("init", repo=repo, encryption="none"), borg="borg", now=NOW)
    assert "--encryption=none" in inv.argv


def test_lock_wait_option_reaches_borg() -> None:
    inv = build(spec("backup", plan=PLAN, lock_wait=30), borg="borg", now=NOW)
    assert "--lock-wait=30" in inv.argv and inv.argv.index("--lock-wait=30") < inv.argv.index("--")


@pytest.mark.parametrize(
    ("job", "kind", "needle"),
    [
        (spec("mount"), "bad_options", "job type mount is not supported by this executor yet"),
        (spec("restore", destination="/r"), "bad_options", "needs an archive"),
        (spec("restore", archive="a1", destination="relative/dir"), "bad_options", "absolute destination"),
        (spec("restore", archive="a1", destination="/srv/../etc"), "bad_options", "absolute destination"),
        (spec("restore", archive="a1"), "bad_options", "absolute destination"),
        (spec("restore", archive="a1", destination="/r", paths="etc"), "bad_options", "options.paths"),
        (spec("restore", archive="a1", destination="/r", strip_components=-1), "bad_options", "strip_components"),
        (spec("restore_check"), "bad_options", "needs an archive"),
        (spec("delete_archive"), "bad_options", "needs an archive"),
        (spec("check", max_duration=60, verify_data=True), "bad_options", "cannot check archives or verify data"),
        (spec("check", repository_only=True, archives_only=True), "bad_options", "repository-only"),
        (spec("check", max_duration="1h"), "bad_options", "max_duration"),
        (spec("prune"), "bad_options", "at least one keep rule"),
        (spec("prune", keep_within="a week"), "bad_options", "keep_within"),
        (spec("prune", keep_daily=-1), "bad_options", "keep_daily"),
        (spec("compact", repo=None), "bad_options", "needs a repository"),
        (spec("backup"), "bad_options", "needs a plan"),
        (spec("backup", repo=None, plan=PLAN), "bad_options", "needs a repository"),
        (spec("backup", plan=PlanRef(id="p", name="empty", repository_id="r1")), "bad_options", "no paths"),
        (spec("init", encryption="rot13"), "bad_options", "not a borg 1.4 encryption mode"),
        (
            spec("init", repo=RepositoryRef(id="r3", name="nopass", location="/x", agent="a1")),
            "bad_options",
            "needs a passphrase",
        ),
        (spec("backup", plan=PLAN, lock_wait="soon"), "bad_options", "lock_wait"),
    ],
)
def test_jobs_that_cannot_run(job: JobSpec, kind: str, needle: str) -> None:
    with pytest.raises(BadJob) as caught:
        build(job, borg="borg", now=NOW)
    assert caught.value.kind == kind and needle in caught.value.message


def test_environment_keeps_borg_to_itself_and_the_passphrase_out_of_arguments(tmp_path: Path) -> None:
    inherited = {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "BORGFLOW_TOKEN": "agent-token",
        "BORG_PASSPHRASE": "operator's own",
        "BORG_PASSCOMMAND": "cat /secret",
        "BORG_RSH": "ssh -i /k",
    }
    env = borg_environment(inherited, data_dir=tmp_path, passphrase="s3cret")
    assert env == {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "BORG_RSH": "ssh -i /k",
        "BORG_BASE_DIR": str(tmp_path / "borg"),
        "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes",
        "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
        "BORG_EXIT_CODES": "modern",
        "BORG_DISPLAY_PASSPHRASE": "no",
        "TZ": "UTC",
        "BORG_PASSPHRASE": "s3cret",
    }
    assert "BORG_PASSPHRASE" not in borg_environment(inherited, data_dir=tmp_path, passphrase=None)


def test_an_agents_timings_are_tunable_from_its_environment() -> None:
    assert options_from_env({}) == ExecutorOptions()
    assert options_from_env({"BORGFLOW_CANCEL_GRACE_S": "2.5"}).cancel_grace_s == 2.5
    assert options_from_env({"BORGFLOW_SECRET_PATIENCE_S": "120"}).secret_patience_s == 120.0


# --------------------------------------------------------------------------- every job type


@pytest.mark.parametrize(
    ("job", "argv", "cwd"),
    [
        (
            spec("restore", archive="a1", destination="/var/tmp/restore"),
            ["extract", "--log-json", "--progress", "--list", "--", "/srv/repo::a1"],
            "/var/tmp/restore",
        ),
        (
            spec(
                "restore",
                archive="a1",
                destination="/var/tmp/restore",
                paths=["etc/app", "-odd"],
                strip_components=2,
                lock_wait=5,
            ),
            [
                "extract",
                "--log-json",
                "--progress",
                "--list",
                "--strip-components=2",
                "--lock-wait=5",
                "--",
                "/srv/repo::a1",
                "etc/app",
                "-odd",
            ],
            "/var/tmp/restore",
        ),
        (
            spec("restore_check", archive="a1", paths=["etc"]),
            ["extract", "--dry-run", "--log-json", "--list", "--progress", "--", "/srv/repo::a1", "etc"],
            None,
        ),
        (spec("check"), ["check", "--log-json", "--progress", "--info", "--", "/srv/repo"], None),
        (
            spec("check", repository_only=True),
            ["check", "--log-json", "--progress", "--info", "--repository-only", "--", "/srv/repo"],
            None,
        ),
        (
            spec("check", archives_only=True, verify_data=True),
            ["check", "--log-json", "--progress", "--info", "--archives-only", "--verify-data", "--", "/srv/repo"],
            None,
        ),
        (
            # borg needs --repository-only with --max-duration: it is added
            spec("check", max_duration=300),
            [
                "check",
                "--log-json",
                "--progress",
                "--info",
                "--repository-only",
                "--max-duration=300",
                "--",
                "/srv/repo",
            ],
            None,
        ),
        (
            spec("prune", keep_daily=7, keep_last=0, keep_within="2d", keep_yearly=None),
            [
                "prune",
                "--log-json",
                "--list",
                "--info",
                "--progress",
                "--stats",
                "--keep-within=2d",
                "--keep-daily=7",
                "--",
                "/srv/repo",
            ],
            None,
        ),
        (
            # a plan's prune only weighs the plan's own archives
            spec(
                "prune",
                plan=PlanRef(id="p", name="web*db", repository_id="r1", archive_name="{plan}-{now}"),
                keep_last=3,
            ),
            [
                "prune",
                "--log-json",
                "--list",
                "--info",
                "--progress",
                "--stats",
                "--keep-last=3",
                "--glob-archives=web[*]db-*",
                "--",
                "/srv/repo",
            ],
            None,
        ),
        (
            # archive names that do not start with the plan's name cannot be told apart: no glob
            spec(
                "prune", plan=PlanRef(id="p", name="web", repository_id="r1", archive_name="{now}-{plan}"), keep_last=3
            ),
            ["prune", "--log-json", "--list", "--info", "--progress", "--stats", "--keep-last=3", "--", "/srv/repo"],
            None,
        ),
        (spec("compact"), ["compact", "--log-json", "--progress", "--info", "--", "/srv/repo"], None),
        (
            spec("delete_archive", archive="a1"),
            ["delete", "--log-json", "--info", "--stats", "--", "/srv/repo::a1"],
            None,
        ),
    ],
    ids=[
        "restore",
        "restore_paths_strip",
        "restore_check",
        "check",
        "check_repository_only",
        "check_archives_verify",
        "check_max_duration",
        "prune",
        "prune_plan_glob",
        "prune_plan_no_glob",
        "compact",
        "delete_archive",
    ],
)
def test_every_job_type_is_an_argument_list(job: JobSpec, argv: list[str], cwd: str | None) -> None:
    inv = build(job, borg="borg", now=NOW)
    assert inv.argv == ["borg", *argv]
    assert inv.cwd == cwd


def test_checkpoint_housekeeping_commands() -> None:
    assert list_checkpoints_command("borg", "/srv/repo", "daily-2026-11-23T16:20:05", 5) == [
        "borg",
        "list",
        "--log-json",
        "--consider-checkpoints",
        "--short",
        "--glob-archives=daily-2026-11-23T16:20:05.checkpoint*",
        "--lock-wait=5",
        "--",
        "/srv/repo",
    ]
    assert delete_archives_command("borg", "/srv/repo", ["a.checkpoint", "a.checkpoint.1"], 5) == [
        "borg",
        "delete",
        "--log-json",
        "--info",
        "--lock-wait=5",
        "--",
        "/srv/repo",
        "a.checkpoint",
        "a.checkpoint.1",
    ]


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("daily", "daily"),
        ("a*b", "a[*]b"),
        ("what?", "what[?]"),
        ("x[1]", "x[[]1]"),
        ("2026-11-23T16:20", "2026-11-23T16:20"),
    ],
)
def test_glob_escape_matches_only_the_name(text: str, escaped: str) -> None:
    assert glob_escape(text) == escaped


@pytest.mark.parametrize(
    ("location", "local"),
    [
        ("/srv/repo", True),
        ("relative/repo", True),
        ("file:///srv/repo", True),
        ("ssh://borg@backup.example:22/./repo", False),
        ("borg@backup.example:repo", False),
        ("backup.example:/srv/repo", False),
    ],
)
def test_local_and_remote_locations(location: str, local: bool) -> None:
    assert is_local(location) is local


def test_script_timeout_is_tunable_per_agent() -> None:
    assert ExecutorOptions().hook_timeout_s == 300.0
    assert options_from_env({"BORGFLOW_HOOK_TIMEOUT_S": "30"}).hook_timeout_s == 30.0

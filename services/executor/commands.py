"""Pure construction of borg command lines and the environment borg runs with.

Always an argument list, never a shell string. Values go in as `--option=value` and
positional arguments after `--`, so a path or pattern that starts with `-` can never be
taken for an option. The passphrase is never an argument: it is only in the environment.

Adding a job type: one builder here (in COMMANDS) and, when its output says more than
its exit code, a Reader in readers.py.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, get_args

import msgspec

from services.executor.databases import DUMPS_DIR
from services.executor.exceptions import BadJob
from shared.events import JobSpec, RepositoryRef
from shared.submit import Encryption

DEFAULT_ENCRYPTION = "repokey-blake2"
ENCRYPTIONS = frozenset(get_args(Encryption))
NOW_FORMAT = "%Y-%m-%dT%H:%M:%S"

# Inherited from the executor's environment. Everything else (the executor's token,
# the operator's own BORG_PASSPHRASE) stays out of borg's environment.
_INHERITED = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "SSH_AUTH_SOCK", "TMPDIR")
_INHERITED_BORG = (
    "BORG_RSH",
    "BORG_REMOTE_PATH",
    "BORG_FILES_CACHE_TTL",
    "BORG_HOST_ID",
    "BORG_LOGGING_CONF",
)


class Invocation(msgspec.Struct, frozen=True, kw_only=True):
    """One borg run: its arguments and, for commands that write one, the archive name."""

    argv: list[str]
    archive: str | None = None
    cwd: str | None = None
    """Where borg runs (a restore's destination: borg extracts into its working directory)."""

    @property
    def summary(self) -> str:
        """The command as a person would type it (for the job log; holds no secret)."""
        return " ".join(self.argv)


Builder = Callable[[JobSpec, str, datetime], Invocation]


def archive_name(template: str, plan_name: str, now: datetime) -> str:
    """The plan's archive_name with {plan} and {now} filled in; other placeholders are borg's."""
    return template.replace("{plan}", plan_name).replace("{now}", now.strftime(NOW_FORMAT))


def init_command(spec: JobSpec, borg: str, now: datetime) -> Invocation:
    repo = _repository(spec)
    encryption = spec.options.get("encryption") or DEFAULT_ENCRYPTION
    if encryption not in ENCRYPTIONS:
        raise BadJob(
            "bad_options",
            f"encryption {encryption!r} is not a borg 1.4 encryption mode",
            "Use one of: " + ", ".join(sorted(ENCRYPTIONS)),
        )
    if encryption != "none" and not repo.has_passphrase:
        # borg would take an empty BORG_PASSPHRASE and lock the key with it.
        raise BadJob(
            "bad_options",
            f"encryption {encryption} needs a passphrase, and repository {repo.name} has none",
            f"Set a passphrase with PUT /api/repositories/{repo.id}, or init with encryption none",
        )
    return Invocation(
        argv=[borg, "init", f"--encryption={encryption}", "--log-json", *_common(spec), "--", repo.location]
    )


def backup_command(spec: JobSpec, borg: str, now: datetime) -> Invocation:
    repo = _repository(spec)
    plan = spec.plan
    if plan is None:
        raise BadJob("bad_options", "a backup job needs a plan", "Queue the backup with a plan_id")
    if not plan.paths:
        raise BadJob("bad_options", f"plan {plan.name} has no paths to back up", "Add paths to the plan")
    name = archive_name(plan.archive_name, plan.name, now)
    argv = [borg, "create", "--log-json", "--progress", "--json", f"--compression={plan.compression}"]
    argv += [f"--exclude={pattern}" for pattern in plan.exclude]
    # A plan's database dumps come through FIFOs under `borgflow-dumps`, relative to the
    # directory the runner runs borg in (services/executor/dumps.py): borg reads their
    # contents only with --read-special, and stores them under exactly that relative path.
    dumps = [DUMPS_DIR] if plan.databases else []
    argv += ["--read-special"] if dumps else []
    argv += [*_common(spec), "--", f"{repo.location}::{name}", *dumps, *plan.paths]
    return Invocation(argv=argv, archive=name)


def restore_command(spec: JobSpec, borg: str, now: datetime) -> Invocation:
    repo = _repository(spec)
    archive = _archive(spec)
    destination = spec.options.get("destination")
    if not isinstance(destination, str) or not posixpath.isabs(destination) or ".." in destination.split("/"):
        raise BadJob(
            "bad_options",
            f"a restore needs an absolute destination without '..', not {destination!r}",
            "Give options.destination as an absolute directory on the agent, e.g. /var/tmp/restore",
        )
    strip = _positive_int(spec.options, "strip_components", what="a whole number of path components")
    argv = [borg, "extract", "--log-json", "--progress", "--list"]
    argv += [f"--strip-components={strip}"] if strip else []
    argv += [*_common(spec), "--", f"{repo.location}::{archive}", *_paths(spec)]
    return Invocation(argv=argv, archive=archive, cwd=destination)


def restore_check_command(spec: JobSpec, borg: str, now: datetime) -> Invocation:
    repo = _repository(spec)
    archive = _archive(spec)
    argv = [borg, "extract", "--dry-run", "--log-json", "--list", "--progress"]
    argv += [*_common(spec), "--", f"{repo.location}::{archive}", *_paths(spec)]
    return Invocation(argv=argv, archive=archive)


def check_command(spec: JobSpec, borg: str, now: datetime) -> Invocation:
    repo = _repository(spec)
    options = spec.options
    repository_only = bool(options.get("repository_only"))
    archives_only = bool(options.get("archives_only"))
    verify_data = bool(options.get("verify_data"))
    max_duration = _positive_int(options, "max_duration")
    if max_duration == 0:
        max_duration = None
    if max_duration is not None:
        # borg refuses --max-duration without --repository-only (a partial check can only
        # read segment checksums; it cannot check archives against a partial index).
        repository_only = True
    if repository_only and (archives_only or verify_data):
        raise BadJob(
            "bad_options",
            "a repository-only check (also implied by max_duration) cannot check archives or verify data",
            "Drop repository_only and max_duration to check archives or verify data, or drop archives_only "
            "and verify_data",
        )
    argv = [borg, "check", "--log-json", "--progress", "--info"]
    argv += ["--repository-only"] if repository_only else []
    argv += ["--archives-only"] if archives_only else []
    argv += ["--verify-data"] if verify_data else []
    argv += [f"--max-duration={max_duration}"] if max_duration is not None else []
    archives = options.get("archives") or []
    if isinstance(archives, list) and len(archives) == 1 and not repository_only:
        # borg 1.4 takes one glob: several archives are checked with all the others (cheap
        # unless verify_data, which reads every chunk of the repository whatever the glob).
        argv += [f"--glob-archives={glob_escape(str(archives[0]))}"]
    argv += [*_common(spec), "--", repo.location]
    return Invocation(argv=argv)


def nothing_stale(spec: JobSpec) -> bool:
    """A "verify what is stale" check (`stale_only`) that found every archive freshly verified."""
    return spec.type == "check" and bool(spec.options.get("stale_only")) and not spec.options.get("archives")


KEEP_RULES = ("keep_within", "keep_last", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")
_INTERVAL = re.compile(r"^\d+[HdwmyS]$")


def prune_command(spec: JobSpec, borg: str, now: datetime) -> Invocation:
    repo = _repository(spec)
    keeps: list[str] = []
    for rule in KEEP_RULES:
        value = spec.options.get(rule)
        if value is None:
            continue
        if rule == "keep_within":
            if not isinstance(value, str) or not _INTERVAL.match(value):
                raise BadJob("bad_options", f"keep_within must be an interval like 7d or 12H, not {value!r}")
        elif _positive_int(spec.options, rule, what="a whole number of archives") == 0:
            continue
        keeps.append(f"--{rule.replace('_', '-')}={value}")
    if not keeps:
        raise BadJob(
            "bad_options",
            "a prune needs at least one keep rule",
            "Give keep_last, keep_daily, keep_weekly, keep_monthly, keep_yearly or keep_within in options, "
            "or set the plan's retention",
        )
    # --progress: borg counts the archives it has pruned of those it prunes (current/total);
    # --stats: how much the pruned archives held alone (what the next compact frees).
    argv = [borg, "prune", "--log-json", "--list", "--info", "--progress", "--stats", *keeps]
    plan = spec.plan
    if plan is not None and plan.archive_name.startswith("{plan}-"):
        # Several plans may share a repository. Only the archives this plan wrote may be
        # weighed against its retention, or pruning it would delete the other plans'
        # archives. The name is the only mark a plan leaves on its archives, and only a
        # template that starts with `{plan}-` makes that mark unambiguous.
        argv.append(f"--glob-archives={glob_escape(plan.name)}-*")
    argv += [*_common(spec), "--", repo.location]
    return Invocation(argv=argv)


def compact_command(spec: JobSpec, borg: str, now: datetime) -> Invocation:
    repo = _repository(spec)
    return Invocation(argv=[borg, "compact", "--log-json", "--progress", "--info", *_common(spec), "--", repo.location])


def delete_archive_command(spec: JobSpec, borg: str, now: datetime) -> Invocation:
    repo = _repository(spec)
    archive = _archive(spec)
    argv = [borg, "delete", "--log-json", "--info", "--stats", *_common(spec), "--", f"{repo.location}::{archive}"]
    return Invocation(argv=argv, archive=archive)


# Job type -> builder. `ping` runs no borg and is answered by the runner itself.
COMMANDS: dict[str, Builder] = {
    "init": init_command,
    "backup": backup_command,
    "restore": restore_command,
    "restore_check": restore_check_command,
    "check": check_command,
    "prune": prune_command,
    "compact": compact_command,
    "delete_archive": delete_archive_command,
}


# --------------------------------------------------------------------------- housekeeping


def list_checkpoints_command(borg: str, location: str, archive: str, lock_wait: int) -> list[str]:
    """The checkpoint archives an interrupted `create` of `archive` left (one name a line)."""
    return [
        borg,
        "list",
        "--log-json",
        "--consider-checkpoints",
        "--short",
        f"--glob-archives={glob_escape(archive)}.checkpoint*",
        f"--lock-wait={lock_wait}",
        "--",
        location,
    ]


def find_archive_command(borg: str, location: str, archive: str, lock_wait: int | None) -> list[str]:
    """`archive` itself if the repository holds it, else nothing (checkpoints are not listed)."""
    wait = [f"--lock-wait={lock_wait}"] if lock_wait is not None else []
    return [borg, "list", "--log-json", "--short", f"--glob-archives={glob_escape(archive)}", *wait, "--", location]


def delete_archives_command(borg: str, location: str, archives: Sequence[str], lock_wait: int) -> list[str]:
    return [borg, "delete", "--log-json", "--info", f"--lock-wait={lock_wait}", "--", location, *archives]


def break_lock_command(borg: str, location: str) -> list[str]:
    return [borg, "break-lock", "--log-json", "--", location]


def is_local(location: str) -> bool:
    """Whether a repository location is a path on this machine (not ssh:// or host:path)."""
    if location.startswith("file://"):
        return True
    if "://" in location:
        return False
    # borg 1.x also takes scp-style `user@host:path`: a colon before the first slash.
    head = location.split("/", 1)[0]
    return ":" not in head


def glob_escape(text: str) -> str:
    """`text` as a borg shell pattern that matches only itself."""
    return re.sub(r"([*?\[])", r"[\1]", text)


def build(spec: JobSpec, *, borg: str, now: datetime) -> Invocation:
    """The borg invocation for a job; BadJob when the type or its options cannot run."""
    builder = COMMANDS.get(spec.type)
    if builder is None:
        raise BadJob(
            "bad_options",
            f"job type {spec.type} is not supported by this executor yet",
            "Upgrade the executor on this agent, or run the job on an agent that supports it",
        )
    return builder(spec, borg, now)


def _repository(spec: JobSpec) -> RepositoryRef:
    if spec.repository is None:
        raise BadJob(
            "bad_options",
            f"a {spec.type} job needs a repository",
            "Queue the job with a repository_id or a plan_id",
        )
    return spec.repository


def _archive(spec: JobSpec) -> str:
    if not spec.archive:
        raise BadJob("bad_options", f"a {spec.type} job needs an archive", "Queue the job with an archive name")
    return spec.archive


def _paths(spec: JobSpec) -> list[str]:
    """Paths inside the archive to restrict a restore to (archive paths have no leading /)."""
    paths = spec.options.get("paths") or []
    if not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
        raise BadJob("bad_options", f"options.paths must be a list of paths inside the archive, not {paths!r}")
    return list(paths)


def lock_wait(spec: JobSpec) -> int | None:
    """The job's `lock_wait` option (seconds borg waits for the repository lock); None: borg's default."""
    return _positive_int(spec.options, "lock_wait")


def _common(spec: JobSpec) -> list[str]:
    """Options every repository command accepts."""
    wait = lock_wait(spec)
    return [f"--lock-wait={wait}"] if wait is not None else []


def _positive_int(options: Mapping[str, Any], key: str, what: str = "a whole number of seconds") -> int | None:
    value = options.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadJob("bad_options", f"option {key} must be {what}, not {value!r}")
    return value


def borg_environment(inherited: Mapping[str, str], *, data_dir: Path, passphrase: str | None) -> dict[str, str]:
    """The environment borg runs with: a few inherited basics plus borgflow's fixed settings.

    BORG_BASE_DIR keeps borg's cache, config and keys under the executor's data dir
    rather than HOME; TZ=UTC makes borg's naive timestamps UTC (reference 4.1).
    """
    env = {key: inherited[key] for key in (*_INHERITED, *_INHERITED_BORG) if key in inherited}
    env |= {
        "BORG_BASE_DIR": str(data_dir / "borg"),
        "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes",
        "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
        "BORG_EXIT_CODES": "modern",
        "BORG_DISPLAY_PASSPHRASE": "no",
        "TZ": "UTC",
    }
    if passphrase is not None:
        env["BORG_PASSPHRASE"] = passphrase
    return env

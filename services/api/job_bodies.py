"""The bodies of POST /api/jobs, one Struct per job type: what `/schema` shows a client.

Litestar decodes a body into one of these, so the OpenAPI document is the truth by
construction: a union tagged by `type`, each type with the fields it takes and its own
options. `shared.submit` then applies the rules a schema cannot say (the plan exists, the
destination is absolute, a prune has a keep rule) and names the field when one fails.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from shared.submit import (
    CheckOptions,
    EmptyOptions,
    InitOptions,
    PackageInstallOptions,
    PingOptions,
    PruneOptions,
    RestoreCheckOptions,
    RestoreDatabaseOptions,
    RestoreOptions,
    S3SyncOptions,
    UpdateAgentOptions,
    UpdateBorgOptions,
)

Id = Annotated[str, Meta(min_length=1, max_length=100, description="an id as the api answered it")]
Archive = Annotated[str, Meta(min_length=1, max_length=1000, description="an archive name in the repository")]


class _Job(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True, tag_field="type"):
    agent: Annotated[
        str | None,
        Meta(description="the agent to run it on; default: the plan's agent, else the repository's"),
    ] = None
    priority: Annotated[int, Meta(ge=-1000, le=1000, description="higher starts first; default 0")] = 0
    trigger: Literal["manual", "cli", "api", "hook"] = "manual"


class BackupJob(_Job, tag="backup"):
    """A backup of a plan: its paths into a new archive of its repository."""

    plan_id: Id
    options: EmptyOptions | None = None


class RestoreJob(_Job, tag="restore"):
    """Extract (part of) an archive into a directory on the agent."""

    repository_id: Id
    archive: Archive
    options: RestoreOptions


class RestoreCheckJob(_Job, tag="restore_check"):
    """Extract an archive to nowhere (`--dry-run`): proves it can be restored."""

    repository_id: Id
    archive: Archive
    options: RestoreCheckOptions | None = None


class CheckJob(_Job, tag="check"):
    """`borg check` of a repository, its archives and optionally the data."""

    repository_id: Id
    options: CheckOptions | None = None


class PruneJob(_Job, tag="prune"):
    """Delete archives the keep rules do not keep: the plan's (`plan_id`) or the options'."""

    repository_id: Id | None = None
    plan_id: Id | None = None
    options: PruneOptions | None = None


class CompactJob(_Job, tag="compact"):
    """Free the space deleted archives held."""

    repository_id: Id
    options: EmptyOptions | None = None


class DeleteArchiveJob(_Job, tag="delete_archive"):
    """Delete one archive."""

    repository_id: Id
    archive: Archive
    options: EmptyOptions | None = None


class InitJob(_Job, tag="init"):
    """Create the repository (`borg init`)."""

    repository_id: Id
    options: InitOptions | None = None


class PingJob(_Job, tag="ping"):
    """Runs no borg: the agent answers with its borg version and host facts."""

    agent: Annotated[str, Meta(min_length=1, description="the agent to ping")]
    options: PingOptions | None = None


class RestorePgJob(_Job, tag="restore_pg"):
    """Restore a PostgreSQL dump of an archive (`borgflow-dumps/postgresql/<database>.dump`) into a
    target database, created when missing; `target.password` is kept apart, never shown."""

    repository_id: Id
    archive: Archive
    options: RestoreDatabaseOptions


class RestoreMysqlJob(_Job, tag="restore_mysql"):
    """Restore a MySQL/MariaDB dump of an archive (`borgflow-dumps/mysql/<database>.dump`) into a
    target database, created when missing; `target.password` is kept apart, never shown."""

    repository_id: Id
    archive: Archive
    options: RestoreDatabaseOptions


class PluginTestJob(_Job, tag="plugin_test"):
    """Check a plan without a backup: each database dumps, each script is there, the repository answers."""

    plan_id: Id
    options: EmptyOptions | None = None


class S3SyncJob(_Job, tag="s3_sync"):
    """Mirror the repository's directory to an rclone remote (S3 or other), optionally under a bandwidth limit."""

    repository_id: Id
    options: S3SyncOptions


class PackageInstallJob(_Job, tag="package_install"):
    """Install Debian packages on the agent with apt-get; only packages on the settings' package_allow_list."""

    agent: Annotated[str, Meta(min_length=1, description="the agent to install on")]
    options: PackageInstallOptions


class UpdateBorgJob(_Job, tag="update_borg"):
    """Install a borgbackup version on the agent with pip, verified before the agent switches to it."""

    agent: Annotated[str, Meta(min_length=1, description="the agent to update")]
    options: UpdateBorgOptions


class UpdateAgentJob(_Job, tag="update_agent"):
    """Install a borgflow version on the agent (from its BORGFLOW_AGENT_SOURCE) and restart its executor into it.

    The job completes after the restart, from the new version; jobs queued meanwhile wait for it.
    """

    agent: Annotated[str, Meta(min_length=1, description="the agent to update")]
    options: UpdateAgentOptions | None = None


JobBody = (
    BackupJob
    | RestoreJob
    | RestoreCheckJob
    | CheckJob
    | PruneJob
    | CompactJob
    | DeleteArchiveJob
    | InitJob
    | PingJob
    | RestorePgJob
    | RestoreMysqlJob
    | PluginTestJob
    | S3SyncJob
    | PackageInstallJob
    | UpdateBorgJob
    | UpdateAgentJob
)


def as_request(body: JobBody) -> dict[str, Any]:
    """The body as JSON again, for `shared.submit.parse_request` and idempotency's hash."""
    out: dict[str, Any] = msgspec.to_builtins(body)
    return out

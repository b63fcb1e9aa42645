"""Every event borgflow puts on NATS: the envelope and its families, in one place.

An event is a frozen, keyword-only msgspec Struct tagged by its wire type
(`"job.failed"`). On the wire it is the envelope of CONTRACT.md section 3:

    {"type": "job.failed", "id": "...", "version": 1, "job_id": "...",
     "at": "2026-11-23T16:20:00.123Z", "data": {...}}

Wire names are explicit strings; nothing here depends on Python import paths.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

import msgspec

from shared.ids import new_id

# --------------------------------------------------------------------------- values


class JobStatus(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    RUNNING = "running"
    COMPLETED = "completed"
    WARNING = "warning"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL: frozenset[JobStatus] = frozenset(
    {JobStatus.COMPLETED, JobStatus.WARNING, JobStatus.FAILED, JobStatus.CANCELLED}
)
ACTIVE: frozenset[JobStatus] = frozenset({JobStatus.QUEUED, JobStatus.SENT, JobStatus.RUNNING})

JobType = Literal[
    "backup",
    "restore",
    "restore_check",
    "check",
    "prune",
    "compact",
    "delete_archive",
    "init",
    "ping",
    "restore_pg",
    "restore_mysql",
    "plugin_test",
    "s3_sync",
    "package_install",
    "update_borg",
    "update_agent",
]
JOB_TYPES: tuple[str, ...] = JobType.__args__  # type: ignore[attr-defined]

# Jobs that take borg's exclusive repository lock: at most one per repository at a time.
WRITING_TYPES: frozenset[str] = frozenset({"backup", "prune", "compact", "delete_archive", "init", "check"})

Trigger = Literal["manual", "cli", "api", "hook", "schedule", "retry", "chain"]
TRIGGERS: tuple[str, ...] = Trigger.__args__  # type: ignore[attr-defined]

# Failures worth an automatic retry (a plan's `retry`): the cause is likely gone by then.
TRANSIENT_KINDS: frozenset[str] = frozenset({"lock_timeout", "connection", "agent_lost", "executor_restarted"})

ErrorKind = Literal[
    "lock_timeout",
    "passphrase",
    "repository_not_found",
    "repository_exists",
    "archive_exists",
    "archive_not_found",
    "source_not_found",
    "permission_denied",
    "no_space",
    "connection",
    "integrity",
    "borg_error",
    "borg_missing",
    "bad_options",
    "hook_failed",
    "stalled",
    "executor_restarted",
    "agent_lost",
    "cancelled_by_user",
    "secret_unavailable",
    "internal",
    "sync_failed",
    "bad_remote",
    "rclone_missing",
    "package_not_found",
    "install_failed",
    "apt_unavailable",
    "update_failed",
    "dump_failed",
    "dump_not_found",
    "database_connection",
    "database_privileges",
    "database_version",
    "restore_failed",
    "script_missing",
]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Progress(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What a running job is doing now. Every field is optional: jobs report what they know."""

    percent: float | None = None
    action: str | None = None
    nfiles: int | None = None
    original_size: int | None = None
    compressed_size: int | None = None
    deduplicated_size: int | None = None
    bytes_per_s: float | None = None
    current_file: str | None = None
    eta_s: float | None = None
    archive: str | None = None
    current: int | None = None
    total: int | None = None
    bytes_done: int | None = None
    bytes_total: int | None = None
    bwlimit: str | None = None
    """The bandwidth limit a transfer runs under (rclone's --bwlimit, e.g. "10M")."""
    estimated: bool | None = None
    """percent and eta_s are an estimate (a backup's, from an earlier archive of the same
    paths and excludes), not borg's own count."""


class JobError(msgspec.Struct, frozen=True, kw_only=True):
    """Why a job did not succeed, and what a person can do about it."""

    kind: str
    message: str
    hint: str = ""
    exit_code: int | None = None


class JobResult(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    exit_code: int | None = None
    archive: str | None = None
    stats: dict[str, Any] = {}
    warnings: list[str] = []
    # Anything else a job type reports (kept/pruned archives, freed bytes, host facts, ...).
    details: dict[str, Any] = {}


class RepositoryRef(msgspec.Struct, frozen=True, kw_only=True):
    """The non-secret part of a repository, as a job ran against it."""

    id: str
    name: str
    location: str
    agent: str
    has_passphrase: bool = False
    storage_low_percent: float = 10.0
    archives_counted: bool = False
    """The read model knew its archive count when the job was queued: a backup then adds one
    to it (`archives_added`) instead of running `borg list` after every archive it makes."""


class Retention(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    keep_within: str | None = None
    keep_last: int | None = None
    keep_daily: int | None = None
    keep_weekly: int | None = None
    keep_monthly: int | None = None
    keep_yearly: int | None = None


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    max_attempts: int = 0
    delay_s: float = 60
    backoff: float = 2


DatabaseKind = Literal["postgresql", "mysql"]


class DatabaseRef(msgspec.Struct, frozen=True, kw_only=True):
    """A database a plan dumps into each backup; its password is kept apart (`has_password`)."""

    kind: DatabaseKind
    host: str
    port: int
    user: str
    database: str
    has_password: bool = False

    @property
    def key(self) -> str:
        """`<kind>/<database>`: its dump's place in the archive and its password's name."""
        return f"{self.kind}/{self.database}"


class SyncAfter(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An s3_sync a plan chains after each successful backup (and its prune and compact)."""

    remote: str
    bwlimit: str | None = None


class PlanRef(msgspec.Struct, frozen=True, kw_only=True):
    """A plan (backup profile) as a job ran with it."""

    id: str
    name: str
    repository_id: str
    agent: str | None = None
    paths: list[str] = []
    exclude: list[str] = []
    compression: str = "lz4"
    archive_name: str = "{plan}-{now}"
    retention: Retention = Retention()
    prune_after: bool = False
    compact_after: bool = False
    sync_after: SyncAfter | None = None
    queue_behavior: Literal["cancel", "queue"] = "cancel"
    max_queue_depth: int = 3
    stall_timeout_s: int = 1800
    pre_scripts: list[str] = []
    post_scripts: list[str] = []
    retry: RetryPolicy = RetryPolicy()
    alert_after_s: int | None = None
    databases: list[DatabaseRef] = []


class Estimate(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What the previous successful backup of the same plan saw: the basis for percent and ETA."""

    nfiles: int | None = None
    original_size: int | None = None
    duration_s: float | None = None
    job_id: str | None = None
    archive: str | None = None
    paths: list[str] | None = None
    """What the earlier backup covered: an estimate holds only for a backup of the same."""
    exclude: list[str] | None = None


class JobSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A job as accepted: what to run, where, and with which configuration.

    It snapshots the non-secret configuration, so a job can be explained and
    retried from its own events even after its plan or repository changed.
    """

    id: str
    type: str
    agent: str
    project: str = "default"
    repository_id: str | None = None
    plan_id: str | None = None
    archive: str | None = None
    trigger: str = "manual"
    requested_by: str | None = None
    priority: int = 0
    retry_of: str | None = None
    parent_id: str | None = None
    schedule_id: str | None = None
    attempt: int = 1
    options: dict[str, Any] = {}
    created_at: datetime
    repository: RepositoryRef | None = None
    plan: PlanRef | None = None
    message: str | None = None
    estimate: Estimate | None = None
    # An automatic retry waits until then before it may start (backoff after a transient failure).
    not_before: datetime | None = None
    # W3C trace context of the span that accepted the job: the job's trace (shared/tracing.py).
    traceparent: str | None = None


# --------------------------------------------------------------------------- envelope


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """The envelope. Subclasses fix the tag (`type`) and the shape of `data`."""

    id: str = msgspec.field(default_factory=new_id)
    version: int = 1
    job_id: str | None = None
    at: datetime = msgspec.field(default_factory=utcnow)

    @property
    def type(self) -> str:
        return type(self).__struct_config__.tag  # type: ignore[return-value]


# --------------------------------------------------------------------------- job family


class SentData(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    agent: str
    # The sending dispatcher's lease epoch: an executor refuses a send from an older one
    # (a dispatcher deposed while its send was on the way). None: sent without a lease.
    epoch: int | None = None


class StartedData(msgspec.Struct, frozen=True, kw_only=True):
    agent: str
    host: str = ""
    pid: int | None = None
    pid_started_at: float | None = None
    borg_version: str | None = None


class CancelRequestedData(msgspec.Struct, frozen=True, kw_only=True):
    by: str | None = None
    reason: str = "cancelled by user"
    # The error kind the job ends with: cancelled_by_user, or stalled when the dispatcher
    # stops a job that made no progress for its stall timeout.
    kind: str = "cancelled_by_user"


class RequeuedData(msgspec.Struct, frozen=True, kw_only=True):
    reason: str


class JobLabels(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What a terminal event is about, by name: a subscriber can say what failed without asking the api."""

    type: str
    agent: str
    project: str = "default"
    plan_id: str | None = None
    plan_name: str | None = None
    repository_id: str | None = None
    repository_name: str | None = None

    @classmethod
    def of_spec(cls, spec: JobSpec) -> JobLabels:
        return cls(
            type=spec.type,
            agent=spec.agent,
            project=spec.project,
            plan_id=spec.plan_id,
            plan_name=spec.plan.name if spec.plan else None,
            repository_id=spec.repository_id,
            repository_name=spec.repository.name if spec.repository else None,
        )


class OutcomeData(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What a finished job reports; the status is the event's type."""

    result: JobResult | None = None
    error: JobError | None = None
    progress: Progress | None = None
    job: JobLabels | None = None


class DeletedData(msgspec.Struct, frozen=True, kw_only=True):
    by: str | None = None


class JobQueued(Event, frozen=True, kw_only=True, tag="job.queued"):
    data: JobSpec


class JobSent(Event, frozen=True, kw_only=True, tag="job.sent"):
    data: SentData


class JobRequeued(Event, frozen=True, kw_only=True, tag="job.requeued"):
    """A sent job its agent did not take in time goes back to the queue."""

    data: RequeuedData


class JobStarted(Event, frozen=True, kw_only=True, tag="job.started"):
    data: StartedData


class JobCancelRequested(Event, frozen=True, kw_only=True, tag="job.cancel_requested"):
    data: CancelRequestedData = CancelRequestedData()


class JobCompleted(Event, frozen=True, kw_only=True, tag="job.completed"):
    data: OutcomeData = OutcomeData()


class JobWarning(Event, frozen=True, kw_only=True, tag="job.warning"):
    data: OutcomeData = OutcomeData()


class JobFailed(Event, frozen=True, kw_only=True, tag="job.failed"):
    data: OutcomeData = OutcomeData()


class JobCancelled(Event, frozen=True, kw_only=True, tag="job.cancelled"):
    data: OutcomeData = OutcomeData()


class JobDeleted(Event, frozen=True, kw_only=True, tag="job.deleted"):
    data: DeletedData = DeletedData()


JobEvent = (
    JobQueued
    | JobSent
    | JobRequeued
    | JobStarted
    | JobCancelRequested
    | JobCompleted
    | JobWarning
    | JobFailed
    | JobCancelled
    | JobDeleted
)
Outcome = JobCompleted | JobWarning | JobFailed | JobCancelled

OUTCOME_BY_STATUS: dict[JobStatus, type[Outcome]] = {
    JobStatus.COMPLETED: JobCompleted,
    JobStatus.WARNING: JobWarning,
    JobStatus.FAILED: JobFailed,
    JobStatus.CANCELLED: JobCancelled,
}

# --------------------------------------------------------------------------- progress, logs


class JobProgress(Event, frozen=True, kw_only=True, tag="job.progress"):
    data: Progress


class LogLine(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    at: datetime
    level: str = "info"
    message: str
    source: str = "borg"


class LogData(msgspec.Struct, frozen=True, kw_only=True):
    lines: list[LogLine]


class JobLog(Event, frozen=True, kw_only=True, tag="job.log"):
    data: LogData


# --------------------------------------------------------------------------- agents


class HeartbeatData(msgspec.Struct, frozen=True, kw_only=True):
    agent: str
    host: str = ""
    borg_version: str | None = None
    borgflow_version: str | None = None  # the executor's own version (None: before it said)
    slots: int = 1
    running: list[str] = []
    interval_s: float = 5.0
    pid: int | None = None


class AgentHeartbeat(Event, frozen=True, kw_only=True, tag="agent.heartbeat"):
    data: HeartbeatData


class AgentStateData(msgspec.Struct, frozen=True, kw_only=True):
    agent: str
    last_seen: datetime | None = None


class AgentOnline(Event, frozen=True, kw_only=True, tag="agent.online"):
    data: AgentStateData


class AgentOffline(Event, frozen=True, kw_only=True, tag="agent.offline"):
    data: AgentStateData


AgentEvent = AgentHeartbeat | AgentOnline | AgentOffline

# --------------------------------------------------------------------------- schedules


class ScheduleFireData(msgspec.Struct, frozen=True, kw_only=True):
    schedule_id: str
    name: str = ""
    fire_at: datetime
    job_id: str | None = None
    reason: str | None = None


class ScheduleFired(Event, frozen=True, kw_only=True, tag="schedule.fired"):
    data: ScheduleFireData


class ScheduleMissed(Event, frozen=True, kw_only=True, tag="schedule.missed"):
    data: ScheduleFireData


ScheduleEvent = ScheduleFired | ScheduleMissed

# --------------------------------------------------------------------------- plans


class PlanStateData(msgspec.Struct, frozen=True, kw_only=True):
    plan_id: str
    name: str = ""
    project: str = "default"
    # overdue: when the last success was (None: never); recovered: the job that succeeded.
    last_success_at: datetime | None = None
    job_id: str | None = None
    detail: str = ""


class PlanOverdue(Event, frozen=True, kw_only=True, tag="plan.overdue"):
    """No backup of the plan succeeded for its alert_after_s (a dead man's switch)."""

    data: PlanStateData


class PlanRecovered(Event, frozen=True, kw_only=True, tag="plan.recovered"):
    """A backup of the plan succeeded after failures or after it was overdue."""

    data: PlanStateData


PlanEvent = PlanOverdue | PlanRecovered

# --------------------------------------------------------------------------- repositories


class StorageData(msgspec.Struct, frozen=True, kw_only=True):
    """A repository's file system crossed its storage_low_percent (measured after job `job_id`)."""

    repository_id: str
    name: str = ""
    project: str = "default"
    job_id: str | None = None
    free_percent: float
    threshold_percent: float
    disk_free: int | None = None
    disk_total: int | None = None


class RepositoryStorageLow(Event, frozen=True, kw_only=True, tag="repository.storage_low"):
    """Free space fell under the repository's storage_low_percent (once per crossing)."""

    data: StorageData


class RepositoryStorageRecovered(Event, frozen=True, kw_only=True, tag="repository.storage_recovered"):
    """Free space is back at or above storage_low_percent after a storage_low."""

    data: StorageData


RepositoryEvent = RepositoryStorageLow | RepositoryStorageRecovered

AnyEvent = JobEvent | JobProgress | JobLog | AgentEvent | ScheduleEvent | PlanEvent | RepositoryEvent


_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[AnyEvent] = msgspec.json.Decoder(AnyEvent)
_job_decoder: msgspec.json.Decoder[JobEvent] = msgspec.json.Decoder(JobEvent)


def encode(event: Event) -> bytes:
    return _encoder.encode(event)


def decode(raw: bytes) -> AnyEvent:
    """Decode any borgflow event; raises msgspec.DecodeError/ValidationError on a bad one."""
    return _decoder.decode(raw)


def decode_job_event(raw: bytes) -> JobEvent:
    return _job_decoder.decode(raw)


def subject_of(event: Event) -> str:
    """The NATS subject an event is published on (CONTRACT.md section 3)."""
    kind = event.type
    if isinstance(event, JobRequeued):
        # Back to queued: it lands on the job's `.queued` subject, as the contract lists.
        return f"borgflow.jobs.{event.job_id}.queued"
    if kind.startswith("job.") and kind not in ("job.progress", "job.log"):
        return f"borgflow.jobs.{event.job_id}.{kind.removeprefix('job.')}"
    if isinstance(event, JobProgress):
        return f"borgflow.progress.{event.job_id}"
    if isinstance(event, JobLog):
        return f"borgflow.logs.{event.job_id}"
    if isinstance(event, AgentHeartbeat | AgentOnline | AgentOffline):
        return f"borgflow.agents.{event.data.agent}.{kind.removeprefix('agent.')}"
    if isinstance(event, ScheduleFired | ScheduleMissed):
        return f"borgflow.schedules.{event.data.schedule_id}.{kind.removeprefix('schedule.')}"
    if isinstance(event, PlanOverdue | PlanRecovered):
        return f"borgflow.plans.{event.data.plan_id}.{kind.removeprefix('plan.')}"
    if isinstance(event, RepositoryStorageLow | RepositoryStorageRecovered):
        return f"borgflow.repositories.{event.data.repository_id}.{kind.removeprefix('repository.')}"
    raise ValueError(f"no subject for event type {kind}")


def to_builtins(value: Any) -> Any:
    """A Struct (or anything msgspec encodes) as plain JSON-ready Python values."""
    return msgspec.to_builtins(value)

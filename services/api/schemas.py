"""Request and response bodies (msgspec Structs); they are also the OpenAPI schema."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from services.api.job_bodies import JobBody
from shared import event_filters
from shared.events import PlanRef
from shared.jobs import JobView
from shared.submit import S3SyncOptions

Name = Annotated[str, Meta(min_length=1, max_length=200)]
Text = Annotated[str, Meta(min_length=1, max_length=4096)]
# Agent names end up in NATS subjects (borgflow.agents.<agent>.online): no dots or wildcards.
AgentName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,100}$")]
NonNegative = Annotated[int, Meta(ge=0)]
# Free space, in percent of the repository's file system, under which its storage is low.
StorageLowPercent = Annotated[float, Meta(ge=0, le=100)]
# Days a check's OK result counts as fresh; older ones read STALE (GET .../verification).
KeepVerifiedDays = Annotated[int, Meta(ge=1, le=3650)]


class _In(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A request body: unknown fields are refused, naming them."""


class _Part(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A part of a request body, frozen so it can be a default."""


# --------------------------------------------------------------------------- repositories


class RepositoryCreate(_In):
    name: Name
    location: Text
    agent: AgentName
    passphrase: str | None = None
    project: Name = "default"
    storage_low_percent: StorageLowPercent = 10.0
    keep_verified_days: KeepVerifiedDays = 30


class RepositoryUpdate(_In):
    """Fields to change; absent ones stay. `passphrase: null` removes the passphrase."""

    name: Name | UnsetType = UNSET
    location: Text | UnsetType = UNSET
    agent: AgentName | UnsetType = UNSET
    passphrase: str | UnsetType | None = UNSET
    storage_low_percent: StorageLowPercent | UnsetType = UNSET
    keep_verified_days: KeepVerifiedDays | UnsetType = UNSET


class Repository(msgspec.Struct, kw_only=True):
    id: str
    project: str
    name: str
    location: str
    agent: str
    has_passphrase: bool
    created_at: datetime
    updated_at: datetime
    storage_low_percent: float = 10.0
    keep_verified_days: int = 30


class RepositoryList(msgspec.Struct, kw_only=True):
    items: list[Repository]


class Archive(msgspec.Struct, kw_only=True):
    name: str
    created: datetime | None
    stats: dict[str, Any]
    job_id: str | None


class ArchiveList(msgspec.Struct, kw_only=True):
    items: list[Archive]


class Verification(msgspec.Struct, kw_only=True):
    """An archive's verification: OK, CORRUPT or MISSING as its last check found it, STALE when
    that OK is older than the repository's keep_verified_days, UNVERIFIED when never checked."""

    archive: str
    result: Literal["OK", "CORRUPT", "MISSING", "STALE", "UNVERIFIED"]
    verified_at: datetime | None
    job_id: str | None
    detail: str


class VerificationReport(msgspec.Struct, kw_only=True):
    items: list[Verification]


class StatsPoint(msgspec.Struct, kw_only=True):
    """A repository's figures on one UTC day, as the day's last job measured them."""

    at: datetime
    archives: int | None
    deduplicated_size: int | None
    disk_used: int | None


def _about(text: str) -> Meta:
    return Meta(description=text)


class RepositoryStats(msgspec.Struct, kw_only=True):
    """A repository's usage as its last backup, prune or compact measured it (null: never measured)."""

    archives: int | None
    original_size: Annotated[int | None, _about("bytes in all archives, before compression and deduplication")]
    compressed_size: Annotated[int | None, _about("bytes in all archives after compression")]
    deduplicated_size: Annotated[int | None, _about("bytes the repository stores (compressed and deduplicated)")]
    compression_ratio: Annotated[float | None, _about("original_size / compressed_size")]
    dedup_ratio: Annotated[float | None, _about("original_size / deduplicated_size")]
    disk_used: Annotated[int | None, _about("used bytes of the repository's file system (null: remote)")]
    disk_free: Annotated[int | None, _about("free bytes of the repository's file system (null: remote)")]
    projected_full_at: Annotated[
        datetime | None, _about("least-squares fit of disk_used over the last 30 days; null when it does not grow")
    ]
    history: Annotated[list[StatsPoint], _about("one point per UTC day, oldest first")]


# --------------------------------------------------------------------------- plans


class RetentionIn(_Part, frozen=True, omit_defaults=True):
    keep_last: NonNegative | None = None
    keep_daily: NonNegative | None = None
    keep_weekly: NonNegative | None = None
    keep_monthly: NonNegative | None = None
    keep_yearly: NonNegative | None = None


class RetryIn(_Part, frozen=True):
    max_attempts: NonNegative = 0
    delay_s: Annotated[float, Meta(ge=0)] = 60
    backoff: Annotated[float, Meta(ge=1)] = 2


class DatabaseIn(_Part, frozen=True, omit_defaults=True):
    """A database a plan dumps into each backup (`borgflow-dumps/<kind>/<database>.dump`).

    `password` is stored encrypted and never returned (`has_password`). On PUT, an entry
    without `password` keeps the one stored for its kind and database; `null` removes it.
    """

    kind: Literal["postgresql", "mysql"]
    host: Annotated[str, Meta(min_length=1, max_length=255)]
    port: Annotated[int, Meta(ge=1, le=65535)]
    user: Annotated[str, Meta(min_length=1, max_length=255)]
    database: Annotated[str, Meta(min_length=1, max_length=255)]
    password: str | UnsetType | None = UNSET
    has_password: Annotated[bool | None, Meta(description="read-only: ignored")] = None


class PlanCreate(_In):
    """A plan (backup profile); the defaults are the contract's."""

    name: Name
    repository_id: Name
    paths: list[str]
    agent: AgentName | None = None
    exclude: list[str] = []
    compression: Name = "lz4"
    archive_name: Name = "{plan}-{now}"
    retention: RetentionIn = RetentionIn()
    prune_after: bool = False
    compact_after: bool = False
    sync_after: Annotated[
        S3SyncOptions | None,
        Meta(
            description="an s3_sync (remote, bwlimit) queued after each successful backup, after its prune and compact"
        ),
    ] = None
    queue_behavior: Literal["cancel", "queue"] = "cancel"
    max_queue_depth: Annotated[int, Meta(ge=1)] = 3
    stall_timeout_s: Annotated[int, Meta(gt=0)] = 1800
    pre_scripts: list[str] = []
    post_scripts: list[str] = []
    retry: RetryIn = RetryIn()
    alert_after_s: Annotated[int, Meta(gt=0)] | None = None
    databases: Annotated[list[DatabaseIn], Meta(max_length=100)] = []


class Plan(PlanRef, frozen=True, kw_only=True):
    project: str = "default"
    created_at: datetime
    updated_at: datetime


class PlanList(msgspec.Struct, kw_only=True):
    items: list[Plan]


# --------------------------------------------------------------------------- jobs, queue, agents


class JobPage(msgspec.Struct, kw_only=True):
    items: list[JobView]
    next_cursor: str | None


class BatchSubmit(_In):
    """POST /api/jobs/batch: POST /api/jobs bodies, up to 1,000."""

    jobs: Annotated[list[dict[str, Any]], Meta(min_length=1, max_length=1000)]


class BatchError(msgspec.Struct, kw_only=True, omit_defaults=True):
    status: int
    detail: str
    field: str | None = None


class BatchRefusal(msgspec.Struct, kw_only=True):
    """A body of a batch that was not queued, and why (the answer a single POST would give)."""

    error: BatchError

    @classmethod
    def of(cls, e: Exception) -> BatchRefusal:
        status = getattr(e, "status", 409)
        field = getattr(e, "field", None)
        return cls(error=BatchError(status=status, detail=str(getattr(e, "detail", e)), field=field))


class BatchAnswer(msgspec.Struct, kw_only=True):
    """One item per body, in order: the job queued (a job, as GET /api/jobs/{id} answers it), or
    `{"error": {"status", "detail", "field"?}}` for a body that was refused."""

    items: list[dict[str, Any]]


class Secret(msgspec.Struct, kw_only=True, omit_defaults=True):
    passphrase: str | None
    # The passwords of the plan's databases by `<kind>/<database>`, for a job that dumps them.
    databases: dict[str, str] = {}
    # A database restore's target password.
    target_password: str | None = None


class QueueSummary(msgspec.Struct, kw_only=True):
    in_queue: int
    completed_24h: int
    completed_prev_24h: int
    failed_24h: int
    avg_duration_s_last_50: float | None
    in_progress: list[JobView]
    recent: list[JobView]
    queued: list[JobView]  # the first 200 in queue order (`in_queue` counts them all)
    by_status: dict[str, int] = {}  # every job by status, from counters (no scan)


class Agent(msgspec.Struct, kw_only=True):
    name: str
    online: bool
    last_seen: datetime
    host: str
    borg_version: str | None
    slots: int
    interval_s: float
    running: list[str]
    borgflow_version: str | None = None
    queued: int = 0  # its jobs waiting to be sent: an agent offline with queued jobs holds them up


class AgentList(msgspec.Struct, kw_only=True):
    items: list[Agent]


class TimingDay(msgspec.Struct, kw_only=True):
    day: str  # YYYY-MM-DD, UTC, the day the jobs finished
    type: str
    jobs: int
    wait_p50_s: float
    wait_p95_s: float
    run_p50_s: float
    run_p95_s: float


class Timings(msgspec.Struct, kw_only=True):
    since: datetime
    items: list[TimingDay]


class Health(msgspec.Struct, kw_only=True, omit_defaults=True):
    status: Literal["ok", "starting"]
    version: str
    detail: str | None = None


# --------------------------------------------------------------------------- schedules

Cron = Annotated[str, Meta(min_length=1, max_length=200)]
# schedules.catch_up_s and interval_s are Postgres integers.
CatchUp = Annotated[int, Meta(ge=0, le=2_147_483_647)]
Interval = Annotated[int, Meta(ge=1, le=2_147_483_647)]


class ScheduleCreate(_In):
    """A schedule: `job` is a POST /api/jobs body, queued at each fire time.

    It fires on `cron` (in `timezone`) or every `interval_s` seconds from its
    creation ("a check every 7 days": 604800); exactly one of the two.
    """

    name: Name
    job: JobBody
    cron: Cron | None = None
    interval_s: Interval | None = None
    timezone: Name = "UTC"
    enabled: bool = True
    catch_up_s: CatchUp = 3600


class LastRun(msgspec.Struct, kw_only=True):
    at: datetime
    job_id: str | None
    # The job's status now; null when its job is gone (deleted) or not yet projected.
    status: str | None


class Schedule(msgspec.Struct, kw_only=True):
    id: str
    project: str
    name: str
    cron: str | None
    timezone: str
    interval_s: int | None
    enabled: bool
    catch_up_s: int
    job: dict[str, Any]
    next_runs: list[datetime]
    last_run: LastRun | None
    created_at: datetime
    updated_at: datetime


class ScheduleList(msgspec.Struct, kw_only=True):
    items: list[Schedule]


class CalendarJob(msgspec.Struct, kw_only=True, tag_field="kind", tag="job"):
    """A job a schedule queued."""

    at: datetime
    schedule_id: str
    schedule_name: str | None  # null once the schedule is deleted
    job_id: str
    type: str
    status: str


class CalendarFire(msgspec.Struct, kw_only=True, tag_field="kind", tag="fire"):
    """A time an enabled schedule will fire."""

    at: datetime
    schedule_id: str
    schedule_name: str
    type: str | None


class CalendarMissed(msgspec.Struct, kw_only=True, tag_field="kind", tag="missed"):
    """A past fire time of an enabled schedule that queued no job before its next fire."""

    at: datetime
    schedule_id: str
    schedule_name: str
    type: str | None


class Calendar(msgspec.Struct, kw_only=True):
    items: list[CalendarJob | CalendarFire | CalendarMissed]
    # Whether items were left out (more than the answer holds); narrow from/to to see them.
    truncated: bool = False


# --------------------------------------------------------------------------- notifications

EventPattern = Annotated[str, Meta(max_length=100)]


class NotificationCreate(_In):
    """A notification target: an apprise URL and the event patterns it wants (`backup.failed`, `*.warning`)."""

    name: Name
    url: Text
    events: Annotated[list[EventPattern], Meta(max_length=100)] = msgspec.field(
        default_factory=lambda: list(event_filters.DEFAULT_EVENTS)
    )
    project: Name = "default"


class Notification(msgspec.Struct, kw_only=True):
    id: str
    project: str
    name: str
    url: str  # masked: credentials in it never come back
    events: list[str]
    created_at: datetime
    updated_at: datetime


class NotificationList(msgspec.Struct, kw_only=True):
    items: list[Notification]


class SendResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    delivered: bool
    detail: str | None = None


class Delivery(msgspec.Struct, kw_only=True):
    at: datetime
    event_type: str
    job_id: str | None
    ok: bool
    error: str | None


class DeliveryList(msgspec.Struct, kw_only=True):
    items: list[Delivery]


# --------------------------------------------------------------------------- tokens


class TokenCreate(_In):
    """A token for a person or program. `agent` binds an agent token to one agent (and only then)."""

    name: Name
    role: Literal["admin", "operator", "viewer", "agent", "join"]
    project: Name = "default"
    agent: AgentName | None = None


class Token(msgspec.Struct, kw_only=True):
    id: str
    name: str
    role: str
    project: str
    agent: str | None = None
    created_at: datetime
    revoked_at: datetime | None


class TokenCreated(Token, kw_only=True):
    token: str  # shown once: only its hash is stored


class TokenList(msgspec.Struct, kw_only=True):
    items: list[Token]

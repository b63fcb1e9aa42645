"""Request and response bodies (msgspec Structs); they are also the OpenAPI schema."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from shared import event_filters
from shared.events import PlanRef
from shared.jobs import JobView

Name = Annotated[str, Meta(min_length=1, max_length=200)]
Text = Annotated[str, Meta(min_length=1, max_length=4096)]
# Agent names end up in NATS subjects (borgflow.agents.<agent>.online): no dots or wildcards.
AgentName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,100}$")]
NonNegative = Annotated[int, Meta(ge=0)]


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


class RepositoryUpdate(_In):
    """Fields to change; absent ones stay. `passphrase: null` removes the passphrase."""

    name: Name | UnsetType = UNSET
    location: Text | UnsetType = UNSET
    agent: AgentName | UnsetType = UNSET
    passphrase: str | UnsetType | None = UNSET


class Repository(msgspec.Struct, kw_only=True):
    id: str
    project: str
    name: str
    location: str
    agent: str
    has_passphrase: bool
    created_at: datetime
    updated_at: datetime


class RepositoryList(msgspec.Struct, kw_only=True):
    items: list[Repository]


class Archive(msgspec.Struct, kw_only=True):
    name: str
    created: datetime | None
    stats: dict[str, Any]
    job_id: str | None


class ArchiveList(msgspec.Struct, kw_only=True):
    items: list[Archive]


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
    queue_behavior: Literal["cancel", "queue"] = "cancel"
    max_queue_depth: Annotated[int, Meta(ge=1)] = 3
    stall_timeout_s: Annotated[int, Meta(gt=0)] = 1800
    pre_scripts: list[str] = []
    post_scripts: list[str] = []
    retry: RetryIn = RetryIn()
    alert_after_s: Annotated[int, Meta(gt=0)] | None = None


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


class Secret(msgspec.Struct, kw_only=True):
    passphrase: str | None


class QueueSummary(msgspec.Struct, kw_only=True):
    in_queue: int
    completed_24h: int
    completed_prev_24h: int
    failed_24h: int
    avg_duration_s_last_50: float | None
    in_progress: list[JobView]
    recent: list[JobView]
    queued: list[JobView]


class Agent(msgspec.Struct, kw_only=True):
    name: str
    online: bool
    last_seen: datetime
    host: str
    borg_version: str | None
    slots: int
    interval_s: float
    running: list[str]


class AgentList(msgspec.Struct, kw_only=True):
    items: list[Agent]


class Health(msgspec.Struct, kw_only=True, omit_defaults=True):
    status: Literal["ok", "starting"]
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
    job: dict[str, Any]
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


class Calendar(msgspec.Struct, kw_only=True):
    items: list[CalendarJob | CalendarFire]
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
    name: Name
    # Agent tokens are configured with each executor, not made here.
    role: Literal["admin", "operator", "viewer"]
    project: Name = "default"


class Token(msgspec.Struct, kw_only=True):
    id: str
    name: str
    role: str
    project: str
    created_at: datetime
    revoked_at: datetime | None


class TokenCreated(Token, kw_only=True):
    token: str  # shown once: only its hash is stored


class TokenList(msgspec.Struct, kw_only=True):
    items: list[Token]

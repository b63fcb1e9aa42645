"""Stream and bucket definitions (CONTRACT.md section 3), created idempotently."""

from __future__ import annotations

import logging

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, KeyValueConfig, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from shared.config import SystemSettings

log = logging.getLogger(__name__)

JOBS = "BORGFLOW_JOBS"
PROGRESS = "BORGFLOW_PROGRESS"
LOGS = "BORGFLOW_LOGS"
AGENTS = "BORGFLOW_AGENTS"
SCHEDULES = "BORGFLOW_SCHEDULES"
PLANS = "BORGFLOW_PLANS"

SETTINGS_BUCKET = "borgflow_settings"
LEASES_BUCKET = "borgflow_leases"
WAITING_BUCKET = "borgflow_waiting"

DAY_S = 86_400.0


def job_subject(job_id: str, event: str = "*") -> str:
    return f"borgflow.jobs.{job_id}.{event}"


def stream_configs(settings: SystemSettings) -> list[StreamConfig]:
    """Every stream borgflow owns, with limits from the live settings."""
    return [
        # The source of truth: kept forever. The duplicate window lets a scheduler
        # (or a retried publish) append the same event twice and land it once.
        StreamConfig(
            name=JOBS,
            subjects=["borgflow.jobs.>"],
            storage=StorageType.FILE,
            duplicate_window=600.0,
            description="every job transition; the source of truth",
        ),
        StreamConfig(
            name=PROGRESS,
            subjects=["borgflow.progress.>"],
            storage=StorageType.FILE,
            max_msgs_per_subject=1,
            max_age=30 * DAY_S,
            discard=DiscardPolicy.OLD,
            description="latest progress per job",
        ),
        StreamConfig(
            name=LOGS,
            subjects=["borgflow.logs.>"],
            storage=StorageType.FILE,
            max_age=settings.log_retention_days * DAY_S,
            max_bytes=settings.log_max_bytes,
            discard=DiscardPolicy.OLD,
            description="job log lines",
        ),
        StreamConfig(
            name=AGENTS,
            subjects=["borgflow.agents.>"],
            storage=StorageType.FILE,
            max_msgs_per_subject=1,
            description="latest heartbeat and online/offline per agent",
        ),
        StreamConfig(
            name=SCHEDULES,
            subjects=["borgflow.schedules.>"],
            storage=StorageType.FILE,
            duplicate_window=600.0,
            max_age=365 * DAY_S,
            description="schedule fired/missed",
        ),
        StreamConfig(
            name=PLANS,
            subjects=["borgflow.plans.>"],
            storage=StorageType.FILE,
            max_age=365 * DAY_S,
            description="plan overdue/recovered",
        ),
    ]


def _differs(want: StreamConfig, have: StreamConfig) -> bool:
    keys = ("subjects", "max_age", "max_bytes", "max_msgs_per_subject", "duplicate_window", "discard")
    # Unset (None) or zero means "server default" in nats-py, which the server reports filled in.
    return any(getattr(want, k) != getattr(have, k) for k in keys if getattr(want, k) not in (None, 0))


async def ensure_streams(js: JetStreamContext, settings: SystemSettings | None = None) -> None:
    """Create every missing stream and bucket; with `settings`, also bring limits up to date.

    Only the api passes settings (it owns them): other services must not reset
    limits a person changed to the defaults they happen to know.
    """
    for cfg in stream_configs(settings or SystemSettings()):
        assert cfg.name is not None
        try:
            info = await js.stream_info(cfg.name)
        except NotFoundError:
            await js.add_stream(cfg)
            continue
        if settings is not None and _differs(cfg, info.config):
            log.info("updating stream limits", extra={"stream": cfg.name})
            await js.update_stream(cfg)
    # The leases bucket's max_age is the lease time: a dead holder's last renewal ages out.
    buckets = ((SETTINGS_BUCKET, 1, None), (LEASES_BUCKET, 1, 10.0), (WAITING_BUCKET, 1, None))
    for bucket, history, ttl in buckets:
        try:
            await js.key_value(bucket)
        except Exception:  # nats-py raises BucketNotFoundError or NotFoundError by version
            await js.create_key_value(KeyValueConfig(bucket=bucket, history=history, ttl=ttl))

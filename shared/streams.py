"""Stream and bucket definitions (CONTRACT.md section 3), created idempotently."""

from __future__ import annotations

import logging
from dataclasses import replace

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, KeyValueConfig, ObjectStoreConfig, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from shared.config import SystemSettings

log = logging.getLogger(__name__)

JOBS = "BORGFLOW_JOBS"
PROGRESS = "BORGFLOW_PROGRESS"
LOGS = "BORGFLOW_LOGS"
AGENTS = "BORGFLOW_AGENTS"
SCHEDULES = "BORGFLOW_SCHEDULES"
PLANS = "BORGFLOW_PLANS"
REPOSITORIES = "BORGFLOW_REPOSITORIES"

SETTINGS_BUCKET = "borgflow_settings"
SNAPSHOTS_BUCKET = "borgflow_snapshots"  # an object store: followers' folds, to start from
LEASES_BUCKET = "borgflow_leases"

DAY_S = 86_400.0


# The last subject token of a job event that ends it (a job's stream then holds nothing after it).
ENDED_EVENTS = frozenset({"completed", "warning", "failed", "cancelled", "deleted"})


def job_subject(job_id: str, event: str = "*") -> str:
    return f"borgflow.jobs.{job_id}.{event}"


def stream_configs(settings: SystemSettings, replicas: int = 1) -> list[StreamConfig]:
    """Every stream borgflow owns, with limits from the live settings and `replicas` copies."""
    configs = [
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
        StreamConfig(
            name=REPOSITORIES,
            subjects=["borgflow.repositories.>"],
            storage=StorageType.FILE,
            duplicate_window=600.0,
            max_age=365 * DAY_S,
            description="repository storage low/recovered",
        ),
    ]
    for cfg in configs:
        cfg.num_replicas = replicas
        # Reads by subject (a job's events, an agent's last heartbeat) are direct gets that
        # any replica answers, never a consumer per read (shared/direct.py).
        cfg.allow_direct = True
    return configs


def _differs(want: StreamConfig, have: StreamConfig) -> bool:
    keys = ("subjects", "max_age", "max_bytes", "max_msgs_per_subject", "duplicate_window", "discard", "allow_direct")
    # Unset (None) or zero means "server default" in nats-py, which the server reports filled in.
    return any(getattr(want, k) != getattr(have, k) for k in keys if getattr(want, k) not in (None, 0))


# KV buckets: (name, history, max_age). The leases bucket's max_age is the lease time:
# a dead holder's last renewal ages out.
BUCKETS: tuple[tuple[str, int, float | None], ...] = (
    (SETTINGS_BUCKET, 1, None),
    (LEASES_BUCKET, 1, 10.0),
)


def kv_stream(bucket: str) -> str:
    """The stream JetStream keeps a KV bucket in."""
    return f"KV_{bucket}"


async def ensure_streams(js: JetStreamContext, settings: SystemSettings | None = None, replicas: int = 1) -> None:
    """Create every missing stream and bucket with `replicas` copies, and raise the copies of
    existing ones that have fewer; with `settings`, also bring limits up to date.

    Only the api passes settings (it owns them): other services must not reset
    limits a person changed to the defaults they happen to know. Replicas are only
    ever raised here: lowering them is a decision for a person (`nats stream edit`).
    """
    for cfg in stream_configs(settings or SystemSettings(), replicas):
        assert cfg.name is not None
        try:
            info = await js.stream_info(cfg.name)
        except NotFoundError:
            await js.add_stream(cfg)
            continue
        if settings is not None and _differs(cfg, info.config):
            log.info("updating stream limits", extra={"stream": cfg.name})
            await js.update_stream(replace(cfg, num_replicas=max(replicas, info.config.num_replicas or 1)))
        else:
            await _raise_replicas(js, info.config, replicas)
    for bucket, history, ttl in BUCKETS:
        try:
            info = await js.stream_info(kv_stream(bucket))
        except NotFoundError:
            await js.create_key_value(KeyValueConfig(bucket=bucket, history=history, ttl=ttl, replicas=replicas))
            continue
        await _raise_replicas(js, info.config, replicas)
    try:
        info = await js.stream_info(f"OBJ_{SNAPSHOTS_BUCKET}")
    except NotFoundError:
        config = ObjectStoreConfig(bucket=SNAPSHOTS_BUCKET, replicas=replicas, description="followers' folds")
        await js.create_object_store(SNAPSHOTS_BUCKET, config)
    else:
        await _raise_replicas(js, info.config, replicas)


async def _raise_replicas(js: JetStreamContext, have: StreamConfig, replicas: int) -> None:
    """Raise the replicas of an existing stream to `replicas`, and allow direct gets on it."""
    current = have.num_replicas or 1
    if not have.allow_direct:
        log.info("allowing direct gets on %s", have.name, extra={"stream": have.name})
        have = replace(have, allow_direct=True)
        if current >= replicas:
            await js.update_stream(have)
            return
    if current >= replicas:
        return
    log.warning(
        "raising the replicas of %s from %d to %d",
        have.name,
        current,
        replicas,
        extra={"stream": have.name, "replicas": replicas},
    )
    await js.update_stream(replace(have, num_replicas=replicas))

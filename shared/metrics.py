"""Prometheus metrics, one definition each, in the process's default registry.

Each process reports what it sees itself, so summing over processes never counts a
thing twice (the dispatcher's own gauges live in services/dispatcher/supervise.py, so
only dispatchers show them): the api counts jobs by status from the read model (at scrape time),
the dispatcher the waiting jobs by reason, executors the jobs they ran (duration,
enqueue to start, processes), every process the events it published and the lag of
each stream it follows. `borgflow up` runs everything in one process and so shows
all of them on one page.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    generate_latest,
)

from shared.version import VERSION

log = logging.getLogger(__name__)

# A `_created` gauge beside every counter and histogram doubles the page and says nothing
# a person needs here.
disable_created_metrics()  # type: ignore[no-untyped-call]

BUILD = Info("borgflow_build", "The borgflow version this process runs.")
BUILD.info({"version": VERSION})

JOBS = Gauge("borgflow_jobs", "Jobs in the read model, by status (reported by the api).", ["status"])
QUEUE_WAITING = Gauge(
    "borgflow_queue_waiting",
    "Queued jobs that may not start yet, by why (reported by the active dispatcher).",
    ["reason"],
)
JOB_DURATION = Histogram(
    "borgflow_job_duration_seconds",
    "Run time of the jobs an executor ran, from started to ended, by type and outcome.",
    ["type", "status"],
    buckets=(0.1, 0.5, 1, 5, 15, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400),
)
ENQUEUE_TO_START = Histogram(
    "borgflow_enqueue_to_start_seconds",
    "Time from a job's acceptance to its executor starting it, by type.",
    ["type"],
    buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
EVENTS = Counter("borgflow_events", "Events this process appended to NATS, by type.", ["type"])
CONSUMER_LAG = Gauge(
    "borgflow_consumer_lag",
    "Messages a follower has still to read from its stream, as of its last fetch.",
    ["follower"],
)
PROCESSES = Counter(
    "borgflow_processes",
    "borg and script processes an executor ran, by what ran and how it exited.",
    ["command", "exit_code"],
)
NOTIFICATIONS = Counter(
    "borgflow_notifications", "Notifications the notifier tried, by event and outcome.", ["event", "outcome"]
)
SCHEDULE_FIRES = Counter("borgflow_schedule_fires", "Schedule fire times handled, by outcome.", ["outcome"])

# Async refreshers run before each scrape (the api counts jobs in Postgres this way).
Refresher = Callable[[], Awaitable[None]]
_refreshers: dict[str, Refresher] = {}
REFRESH_TIMEOUT_S = 5.0


def before_scrape(name: str, refresh: Refresher | None) -> None:
    """Run `refresh` before each scrape (None removes it): for figures read at scrape time."""
    if refresh is None:
        _refreshers.pop(name, None)
    else:
        _refreshers[name] = refresh


async def render(registry: CollectorRegistry = REGISTRY) -> bytes:
    """The Prometheus text page, after the refreshers ran (a failing one keeps its last figures)."""
    for name, refresh in list(_refreshers.items()):
        try:
            await asyncio.wait_for(refresh(), REFRESH_TIMEOUT_S)
        except Exception as e:
            log.warning("metrics refresh %s failed: %s", name, type(e).__name__)
    page: bytes = generate_latest(registry)
    return page


def lag(follower: str, pending: int | None) -> None:
    """Record how far behind a follower is (num_pending of the last message it fetched)."""
    if pending is not None:
        CONSUMER_LAG.labels(follower=follower).set(pending)

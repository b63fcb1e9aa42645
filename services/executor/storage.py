"""`repository.storage_low` and `.storage_recovered`: raised by the executor that measured.

The executor that measured a repository's free space decides, right then, whether it
crossed the repository's storage_low_percent (shared/insight.storage_crossing). The
last word is the repository's own last storage event in BORGFLOW_REPOSITORIES: the
stream remembers across restarts, and nothing is kept anywhere else. The append is a
compare-and-set on that last event (a second executor measuring the same crossing at
the same time lands nothing), and carries the job's id as its message id (the same
job's outcome published again after a restart lands once). An append that fails
(NATS away) is only logged: the next job that measures the repository raises it.
"""

from __future__ import annotations

import logging
from typing import Any

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from shared import bus, direct
from shared.events import JobResult, JobSpec, RepositoryStorageLow, RepositoryStorageRecovered, StorageData
from shared.exceptions import ConcurrencyConflict
from shared.insight import free_percent, storage_crossing
from shared.streams import REPOSITORIES

log = logging.getLogger(__name__)


def storage_subject(repository_id: str, event: str = "*") -> str:
    return f"borgflow.repositories.{repository_id}.{event}"


async def last_word(nc: NATS, repository_id: str) -> tuple[bool, int]:
    """Whether the repository's last storage event says low, and that event's sequence (0: none)."""
    stored = await direct.last(nc, REPOSITORIES, storage_subject(repository_id))
    if stored is None:
        return False, 0
    return stored.subject.endswith(".storage_low"), stored.seq


async def alert(js: JetStreamContext, spec: JobSpec, result: JobResult | None) -> str | None:
    """Raise the crossing the job's measured figures show, if any; returns the event type raised."""
    repo = spec.repository
    figures: dict[str, Any] = (result.details.get("repository") or {}) if result is not None else {}
    free = free_percent(figures.get("disk_free"), figures.get("disk_total"))
    if repo is None or free is None:
        return None
    extra = {"job_id": spec.id, "repository_id": repo.id}
    try:
        was_low, seq = await last_word(bus.nc_of(js), repo.id)
        crossing = storage_crossing(free, repo.storage_low_percent, was_low)
        if crossing is None:
            return None
        data = StorageData(
            repository_id=repo.id,
            name=repo.name,
            project=spec.project,
            job_id=spec.id,
            free_percent=free,
            threshold_percent=repo.storage_low_percent,
            disk_free=figures.get("disk_free"),
            disk_total=figures.get("disk_total"),
        )
        event = RepositoryStorageLow(data=data) if crossing == "low" else RepositoryStorageRecovered(data=data)
        await bus.publish(
            js,
            event,
            msg_id=f"{spec.id}.storage_{crossing}",
            expect_last_seq=seq,
            expect_subject=storage_subject(repo.id),
        )
    except ConcurrencyConflict:
        log.info("another executor raised this storage crossing first", extra=extra)
        return None
    except Exception as e:  # never fails the job: the next measurement raises it
        log.warning("could not raise the storage alert: %s", e, extra=extra)
        return None
    log.warning("repository storage %s", crossing, extra=extra | {"free_percent": free})
    return event.type

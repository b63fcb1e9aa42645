"""The events a notification target may ask for, and the ones it hears by default.

A filter is `<type>.<outcome>` (`backup.failed`, `backup.recovered`, `plan.overdue`),
where `*` matches any part (`*.failed`, `backup.*`), or a bare `*` for everything.
The api validates filters by it and the notifier matches by it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fnmatch import fnmatchcase

# What a target hears when it names no events: failures and warnings, where a missed
# schedule, an overdue plan, an offline agent and a repository running out of space are
# failures too.
DEFAULT_EVENTS = ("*.failed", "*.warning", "schedule.missed", "plan.overdue", "agent.offline", "repository.storage_low")

# Job types may hold digits (s3_sync): a filter names them as they are.
PATTERN = re.compile(r"^(\*|[a-z0-9_*]+\.[a-z_*]+)$")


def valid(pattern: str) -> bool:
    return bool(PATTERN.match(pattern))


def filters_of(events: Sequence[str] | None) -> list[str]:
    """A target's filters: the ones it stores, or DEFAULT_EVENTS when it stores none."""
    given = [e.strip() for e in events or () if isinstance(e, str) and e.strip()]
    return given or list(DEFAULT_EVENTS)


def wants(filters: Sequence[str], key: str) -> bool:
    """Whether a target with these filters wants an event named `key`."""
    return any(fnmatchcase(key, f.strip()) for f in filters if f.strip())

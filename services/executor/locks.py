"""Who holds a local repository's lock, read from borg's own lock files, and whether it may be broken.

borg 1.x keeps a repository's lock beside its data: `lock.exclusive/` (one file a holder,
`<host id>.<pid>-<thread id in hex>`) and `lock.roster`, JSON naming every holder as
[host id, pid, thread id] under "exclusive" or "shared". Readers (`borg list`, `check`,
`extract`) each add a shared entry; `borg break-lock` removes every entry, theirs too.
So a lock is broken only when no holder may still be at work (`may_be_live` is empty).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import NamedTuple


class Holder(NamedTuple):
    """One holder of a repository lock, as borg names it."""

    host: str
    pid: int
    thread: int = 0

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


# `<host id>.<pid>-<thread id in hex>`; the host id itself may hold dots (an fqdn).
_HOLDER = re.compile(r"^(?P<host>.+)\.(?P<pid>\d+)-(?P<thread>[0-9a-f]+)$")


def read(location: str) -> tuple[bool, set[Holder]]:
    """Whether a local repository is locked, and the holders its lock files name."""
    repo = Path(location.removeprefix("file://"))
    exclusive, roster = repo / "lock.exclusive", repo / "lock.roster"
    locked = exclusive.exists() or roster.exists()
    holders: set[Holder] = set()
    with contextlib.suppress(OSError):
        for name in os.listdir(exclusive):
            if match := _HOLDER.match(name):
                holders.add(Holder(match["host"], int(match["pid"]), int(match["thread"], 16)))
    with contextlib.suppress(OSError, ValueError):
        doc = json.loads(roster.read_text())
        for entries in doc.values() if isinstance(doc, dict) else ():
            for entry in entries if isinstance(entries, list) else ():
                if isinstance(entry, list) and len(entry) == 3:
                    host, pid, thread = entry
                    if isinstance(host, str) and isinstance(pid, int) and isinstance(thread, int):
                        holders.add(Holder(host, pid, thread))
    return locked, holders


def may_be_live(holders: Iterable[Holder], *, host_id: str, running: Callable[[int], bool]) -> list[Holder]:
    """The holders that may still be at work, which a broken lock would leave unprotected.

    The policy is borg's own (`platform.process_alive`): a holder on this host is live
    while its pid runs; a holder on another host (a repository on a shared filesystem)
    cannot be checked from here and counts as live. A pid that now belongs to an
    unrelated process counts as live too: the lock is then left, never wrongly broken.
    """
    return sorted(h for h in holders if h.host != host_id or running(h.pid))


def borg_host_id(env: Mapping[str, str]) -> str:
    """The host id a borg run with `env` writes in its lock files on this machine.

    As borg.platform.base computes it: BORG_HOST_ID, else `<fqdn>@<uuid.getnode()>`
    with borg's fqdn (the canonical name getaddrinfo gives, not socket.getfqdn's).
    """
    if given := env.get("BORG_HOST_ID"):
        return given
    return f"{_borg_fqdn()}@{uuid.getnode()}"


def _borg_fqdn() -> str:
    name = socket.gethostname()
    with contextlib.suppress(OSError):
        for addr in socket.getaddrinfo(name, None, 0, socket.SOCK_DGRAM, 0, socket.AI_CANONNAME):
            if addr[3]:
                return addr[3]
    return name

"""A repository's verification report: what each archive's last check said, and how old it is.

Check jobs record OK / CORRUPT / MISSING per archive (their result's
`details.verification`, projected into `verifications`). Reading it, a result older
than the repository's `keep_verified_days` reads STALE, and an archive the system knows
(from backups, or from a check that saw it) but no check ever verified reads UNVERIFIED.
`report` is pure and takes the clock as an argument; `load_report` reads Postgres.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Literal

import msgspec

from shared.db import Conn

Result = Literal["OK", "CORRUPT", "MISSING", "STALE", "UNVERIFIED"]
DEFAULT_KEEP_VERIFIED_DAYS = 30


class Recorded(msgspec.Struct, frozen=True, kw_only=True):
    """One archive's last verification, as projected."""

    archive: str
    result: str
    verified_at: datetime
    job_id: str
    detail: str = ""


class ReportItem(msgspec.Struct, kw_only=True):
    archive: str
    result: Result
    verified_at: datetime | None = None
    job_id: str | None = None
    detail: str = ""


def report(known: Iterable[str], recorded: Iterable[Recorded], now: datetime, keep_days: int) -> list[ReportItem]:
    """Every known or verified archive with the result a person should read now.

    A CORRUPT or MISSING result stays what it is however old: damage does not heal with time.
    """
    by_name = {r.archive: r for r in recorded}
    cutoff = now - timedelta(days=keep_days)
    items: list[ReportItem] = []
    for name in sorted(set(known) | set(by_name)):
        r = by_name.get(name)
        if r is None:
            items.append(ReportItem(archive=name, result="UNVERIFIED", detail="never checked"))
            continue
        result: Result = "OK" if r.result == "OK" else "MISSING" if r.result == "MISSING" else "CORRUPT"
        detail = r.detail
        if result == "OK" and r.verified_at < cutoff:
            result = "STALE"
            detail = f"last verified OK more than {keep_days} days ago ({r.detail})" if r.detail else detail
        items.append(ReportItem(archive=name, result=result, verified_at=r.verified_at, job_id=r.job_id, detail=detail))
    return items


def needing_check(items: Iterable[ReportItem]) -> list[str]:
    """What a "verify what is stale" check should cover: stale and never-verified archives."""
    return [i.archive for i in items if i.result in ("STALE", "UNVERIFIED")]


async def load_report(conn: Conn, repo_id: str, now: datetime) -> list[ReportItem]:
    keep = await conn.fetchval("SELECT keep_verified_days FROM repositories WHERE id = $1", repo_id)
    known = await conn.fetch("SELECT name FROM archives WHERE repository_id = $1", repo_id)
    rows = await conn.fetch(
        "SELECT archive, result, verified_at, job_id, detail FROM verifications WHERE repository_id = $1", repo_id
    )
    recorded = [Recorded(**dict(r)) for r in rows]
    return report([r["name"] for r in known], recorded, now, int(keep or DEFAULT_KEEP_VERIFIED_DAYS))

"""Whether a finished job's log is still kept, and if not why (shared/logpolicy.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import nats.js.errors

from services.api import system_settings
from services.api.runtime import Runtime
from shared.events import TERMINAL, JobLog, LogLine, decode
from shared.jobs import JobView
from shared.logpolicy import note
from shared.streams import LOGS


async def last_line(rt: Runtime, job_id: str) -> LogLine | None:
    """The last log line BORGFLOW_LOGS holds for the job (None: none)."""
    try:
        msg = await rt.js.get_last_msg(LOGS, f"borgflow.logs.{job_id}")
    except nats.js.errors.NotFoundError:
        return None
    try:
        event = decode(msg.data or b"")
    except msgspec.MsgspecError:
        return None
    return event.data.lines[-1] if isinstance(event, JobLog) and event.data.lines else None


async def with_log_note(rt: Runtime, view: JobView) -> JobView:
    if view.status not in TERMINAL:
        return view
    settings = await system_settings.load(rt.pool)
    why = note(
        await last_line(rt, view.id),
        ended=True,
        started=view.started_at is not None,
        finished_at=view.finished_at,
        now=datetime.now(UTC),
        retention_days=settings.log_retention_days,
    )
    return msgspec.structs.replace(view, log_note=why) if why else view

"""The log_save_policy, applied as jobs end: a log the policy does not keep is purged from
BORGFLOW_LOGS and replaced by one line saying why (shared/logpolicy.py decides)."""

from __future__ import annotations

import logging

from nats.js import JetStreamContext

from shared import bus
from shared.events import JobLog, LogData, utcnow
from shared.logpolicy import discard_reason, marker
from shared.streams import LOGS

log = logging.getLogger(__name__)


async def apply(js: JetStreamContext, job_id: str, status: str, policy: str) -> bool:
    """Drop the log of a job that ended `status` if `policy` does not keep it; True if dropped."""
    reason = discard_reason(policy, status)
    if reason is None:
        return False
    subject = f"borgflow.logs.{job_id}"
    await js.purge_stream(LOGS, subject=subject)
    await bus.publish(js, JobLog(job_id=job_id, data=LogData(lines=[marker(reason, utcnow())])))
    log.info("log not kept", extra={"job_id": job_id, "status": status, "policy": policy})
    return True

"""`ping`: the agent answers with its host facts; nothing runs."""

from __future__ import annotations

from typing import ClassVar

from services.executor.endings import Ending
from services.executor.jobs.plugin import PluginJob, completed
from shared.version import VERSION


class Ping:
    types: ClassVar[frozenset[str]] = frozenset({"ping"})
    wants_passphrase: ClassVar[bool] = False

    async def run(self, job: PluginJob) -> Ending:
        facts = job.facts
        return completed(
            {
                "agent": facts.agent,
                "host": facts.host,
                "borg_version": facts.borg_version,
                "borg": job.borg,
                "python_version": facts.python_version,
                "borgflow_version": VERSION,
            }
        )

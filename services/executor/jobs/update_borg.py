"""`update_borg`: install a borgbackup version on the agent, verified before it is used.

Three steps, each a process whose output is the job's log:

1. `python -m venv <root>/<version>-<job>`: a venv of its own for this install, named
   for the job too, so that it never overwrites the borg in use (even one of the same
   version). The executor's own interpreter makes it: borgbackup needs a Python, and
   this one is known to run.
2. its `pip install borgbackup==<version>`: from the index pip is configured with in
   the executor's environment (PIP_INDEX_URL, PIP_FIND_LINKS, PIP_NO_INDEX work as for
   any pip), a wheel when there is one, else built from source (then the build needs
   the libraries and headers make install puts on an agent, and minutes).
3. its `borg --version`, which must print that version.

Only then is `current` switched to it (borgs.py): jobs after this one run the new borg,
and the executor's heartbeats say its version. Any failure removes the new venv and
leaves `current` as it was, failing the job as `update_failed`.
"""

from __future__ import annotations

import asyncio
import shutil
from typing import ClassVar

from services.executor import borgs
from services.executor.endings import Ending
from services.executor.jobs.installing import install
from services.executor.jobs.plugin import PluginJob, completed


class UpdateBorg:
    types: ClassVar[frozenset[str]] = frozenset({"update_borg"})
    wants_passphrase: ClassVar[bool] = False

    async def run(self, job: PluginJob) -> Ending:
        version = str(job.spec.options.get("version", ""))
        if not version:
            return job.failed("bad_options", "an update_borg job needs a version", "Give options.version (1.4.5)")
        root = borgs.borg_root(job.data_dir, job.agent)
        target = root / f"{version}-{job.spec.id}"
        before = job.facts.borg_version
        await asyncio.to_thread(root.mkdir, parents=True, exist_ok=True)
        installed = await install(job, target, f"borgbackup=={version}", "borg", lambda said: said == version)
        if not isinstance(installed, str):
            await asyncio.to_thread(shutil.rmtree, target, True)
            return installed if isinstance(installed, Ending) else self._failed(job, version, *installed)
        await asyncio.to_thread(borgs.switch, root, target)
        now = await job.borg_changed() if job.borg_changed is not None else version
        job.line(f"agent {job.agent} now runs borg {now} from {target} (it ran {before or 'none'} before)")
        return completed({"version": version, "previous": before, "borg": str(target / "bin" / "borg")})

    def _failed(self, job: PluginJob, version: str, why: str, exit_code: int | None = None) -> Ending:
        keeps = job.facts.borg_version or "none"
        return job.failed(
            "update_failed",
            f"borg {version} could not be installed on agent {job.agent}: {why}",
            f"Agent {job.agent} keeps borg {keeps}. The job log has pip's output: check that borgbackup "
            f"{version} exists on the index the agent's pip uses (PIP_INDEX_URL) and, for a build from "
            "source, that the agent has borg's build dependencies (make install)",
            exit_code=exit_code,
        )

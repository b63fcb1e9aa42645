"""`update_agent`: install a borgflow version on the agent, then restart its executor into it.

Steps, each a process whose output is the job's log:

1. `python -m venv <root>/<version>-<job>` (installs.py): a venv of its own, so that the
   borgflow running now is never overwritten; a `.pth` file in it names this
   environment's site-packages, so that pip finds the dependencies already here.
2. its `pip install <source>[==<version>]`: `source` is BORGFLOW_AGENT_SOURCE on the agent
   (default `borgflow`, from the index pip is configured with; a wheel, a directory or a
   URL pip understands works too). The source is the agent's own configuration, never
   the job's: a job may pick a version, not what code an agent runs.
3. its `borgflow --version`, which must answer (and say the version asked for, if any).

Then `current` is switched to it and the job ends with `relaunch`: the runner records the
outcome without publishing it, the executor stops taking jobs, waits for the ones it runs,
and execs the new borgflow, whose recovery publishes the recorded outcome. So the job
completes after the restart, from the new version, and nothing queued meanwhile is lost.
Any failure removes the new venv, keeps `current` as it was and fails as `update_failed`.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import ClassVar

import msgspec

from services.executor import borgs, installs
from services.executor.endings import Ending
from services.executor.jobs.installing import install
from services.executor.jobs.plugin import PluginJob, completed
from shared.events import Progress
from shared.version import VERSION

DEFAULT_SOURCE = "borgflow"


def requirement(source: str, version: str | None) -> str:
    """What pip installs: a package name pinned to the version, else the source as given."""
    is_name = not any(c in source for c in "/:\\") and not source.endswith((".whl", ".tar.gz", ".zip"))
    return f"{source}=={version}" if version and is_name else source


class UpdateAgent:
    types: ClassVar[frozenset[str]] = frozenset({"update_agent"})
    wants_passphrase: ClassVar[bool] = False

    async def run(self, job: PluginJob) -> Ending:
        version = str(job.spec.options.get("version") or "") or None
        source = job.environ.get("BORGFLOW_AGENT_SOURCE") or DEFAULT_SOURCE
        root = installs.agent_root(job.data_dir, job.agent)
        target = root / f"{version or 'latest'}-{job.spec.id}"
        await asyncio.to_thread(root.mkdir, parents=True, exist_ok=True)
        req = requirement(source, version)
        installed = await install(
            job, target, req, "borgflow", lambda said: version is None or said == version, _reuse_this_environment
        )
        if not isinstance(installed, str):
            await asyncio.to_thread(shutil.rmtree, target, True)
            return installed if isinstance(installed, Ending) else self._failed(job, req, *installed)
        await asyncio.to_thread(borgs.switch, root, target)
        exe = target / "bin" / "borgflow"
        job.line(f"agent {job.agent} switches to borgflow {installed} from {target} (it ran {VERSION}); restarting")
        job.progress(Progress(action="restarting the executor"))
        ended = completed({"version": installed, "previous": VERSION, "borgflow": str(exe)})
        return msgspec.structs.replace(ended, relaunch=str(exe))

    def _failed(self, job: PluginJob, req: str, why: str, exit_code: int | None = None) -> Ending:
        version = job.spec.options.get("version")
        asked = f"borgflow {version}" if version else "borgflow"
        return job.failed(
            "update_failed",
            f"{asked} could not be installed on agent {job.agent} from {req}: {why}",
            f"Agent {job.agent} keeps borgflow {VERSION}. The job log has pip's output: check that {asked} is "
            "where the agent's pip looks (BORGFLOW_AGENT_SOURCE, PIP_INDEX_URL) and that the agent can reach it",
            exit_code=exit_code,
        )


def _reuse_this_environment(target: Path) -> None:
    """A .pth in the new venv naming this environment's site-packages, after the venv's own."""
    lib = target / "lib"
    for site in lib.glob("python*/site-packages"):
        (site / installs.PREVIOUS_PTH).write_text("\n".join(installs.site_packages_of_this_environment()) + "\n")

"""`package_install`: install system packages on the agent with apt-get, output streamed
as the job's log.

Only packages on the settings' `package_allow_list` get this far: the api refuses the
rest at submission (shared/submit.py). The executor does not check the list again: it
runs what an admin allowed when the job was accepted.

`apt-get install -y --no-install-recommends -- <packages>` runs first, on the package
lists the machine has. Only when apt-get says a package is unknown ("Unable to locate
package") are the lists refreshed (`apt-get update`) and the install tried once more: an
update costs a download from every source, and most installs do not need one.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from typing import ClassVar

from services.executor.endings import Ending
from services.executor.jobs.plugin import PluginJob, completed
from services.executor.jobs.process import ProcessExit, ProcessUnavailable
from shared.events import Progress

# apt-get waits this long for another apt or dpkg to let go of its lock, rather than failing at once.
LOCK_TIMEOUT_S = 120
_UNKNOWN = re.compile(r"Unable to locate package (\S+)")
_SETTING_UP = re.compile(r"^Setting up ([^:\s]+)")
_NETWORK = ("Temporary failure resolving", "Failed to fetch", "Could not connect", "Connection timed out")


@dataclass
class AptRun:
    """What one apt-get run said that its outcome needs."""

    unknown: list[str] = field(default_factory=list)
    installed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def read(self, text: str) -> str:
        """Note one line; its level in the job's log."""
        if m := _UNKNOWN.search(text):
            self.unknown.append(m.group(1))
        if m := _SETTING_UP.match(text):
            self.installed.append(m.group(1))
        if text.startswith("E:"):
            self.errors.append(text.removeprefix("E:").strip())
            return "error"
        return "warning" if text.startswith("W:") else "info"


def install_command(packages: list[str]) -> list[str]:
    return [
        "apt-get",
        "install",
        "-y",
        "--no-install-recommends",
        f"-o=DPkg::Lock::Timeout={LOCK_TIMEOUT_S}",
        "--",
        *packages,
    ]


def failure(code: int, run: AptRun, packages: list[str], agent: str) -> tuple[str, str, str]:
    """(kind, message, hint) for an apt-get install that exited `code`."""
    last = run.errors[-1] if run.errors else f"apt-get exited with {code}"
    message = f"apt-get install {' '.join(packages)} failed: {last}"
    if run.unknown:
        return (
            "package_not_found",
            message,
            f"No package {', '.join(run.unknown)} in the package sources of agent {agent}: check the name "
            "(apt-cache search on the agent) and its /etc/apt/sources.list",
        )
    if any(marker in e for e in run.errors for marker in _NETWORK):
        return "connection", message, f"Agent {agent} could not reach its package mirrors: check its network and proxy"
    return "install_failed", message, f"apt-get on agent {agent} failed: the job log has its output"


class PackageInstall:
    types: ClassVar[frozenset[str]] = frozenset({"package_install"})
    wants_passphrase: ClassVar[bool] = False

    async def run(self, job: PluginJob) -> Ending:
        packages = [str(p) for p in job.spec.options.get("packages", [])]
        if not packages:
            return job.failed("bad_options", "a package_install job needs packages", "Give options.packages")
        refused = self._refused(job, packages)
        if refused is not None:
            return refused
        env = job.child_environment({"DEBIAN_FRONTEND": "noninteractive"})
        job.progress(_progress(f"installing {', '.join(packages)}"))
        done, run = await self._apt(job, install_command(packages), env)
        if isinstance(done, Ending):
            return done
        if done.code != 0 and run.unknown and not job.cancelled:
            job.line(f"apt-get does not know {', '.join(run.unknown)}: refreshing the package lists (apt-get update)")
            job.progress(_progress("updating the package lists"))
            updated, _ = await self._apt(job, ["apt-get", "update", f"-o=DPkg::Lock::Timeout={LOCK_TIMEOUT_S}"], env)
            if isinstance(updated, Ending):
                return updated
            job.progress(_progress(f"installing {', '.join(packages)}"))
            done, run = await self._apt(job, install_command(packages), env)
            if isinstance(done, Ending):
                return done
        if done.code != 0:
            kind, message, hint = failure(done.code, run, packages, job.agent)
            return job.failed(kind, message, hint, exit_code=done.code)
        return completed({"packages": packages, "installed": run.installed})

    def _refused(self, job: PluginJob, packages: list[str]) -> Ending | None:
        command = f"apt-get install {' '.join(packages)}"
        if shutil.which("apt-get", path=job.environ.get("PATH")) is None:
            return job.failed(
                "apt_unavailable",
                f"agent {job.agent} has no apt-get: package_install installs Debian packages only",
                f"Install the packages on agent {job.agent} with its own package manager",
            )
        if os.geteuid() != 0:
            return job.failed(
                "permission_denied",
                f"the executor on agent {job.agent} does not run as root, and apt-get needs root to install",
                f"Run `sudo {command}` on agent {job.agent}, or run its executor as root",
            )
        return None

    async def _apt(self, job: PluginJob, argv: list[str], env: dict[str, str]) -> tuple[ProcessExit | Ending, AptRun]:
        """One apt-get run, its lines to the log; an Ending when it could not start or was stopped."""
        run = AptRun()
        job.line(f"starting {' '.join(argv)}")

        def on_line(text: str, stream: str) -> None:
            job.line(text, level=run.read(text), source="apt-get")

        try:
            done = await job.run(argv, on_line, env=env, what="apt-get")
        except ProcessUnavailable as e:
            return job.failed("apt_unavailable", str(e), f"Install apt on agent {job.agent}, or fix its PATH"), run
        job.line(f"apt-get exited with {done.code} after {done.elapsed_s:.1f}s")
        if done.signalled and done.code != 0:
            return job.stopped("apt-get", done.code), run
        return done, run


def _progress(action: str) -> Progress:
    return Progress(action=action)

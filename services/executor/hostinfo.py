"""Facts about the agent's machine: host name, borg version, this process's identity."""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import shutil
import socket

import msgspec

from services.executor import processes

log = logging.getLogger(__name__)


class HostFacts(msgspec.Struct, frozen=True, kw_only=True):
    """Learnt once at start; heartbeats, started events and ping results carry them."""

    agent: str
    host: str
    pid: int
    pid_started_at: float | None
    borg_version: str | None
    python_version: str


# borg's version by executable file (path, size, mtime): asking costs a Python start-up
# (half a second), and a file replaced by an upgrade is asked again.
_versions: dict[tuple[str, int, int], str] = {}


def _identity(borg: str) -> tuple[str, int, int] | None:
    path = shutil.which(borg)
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (os.path.realpath(path), st.st_size, st.st_mtime_ns)


async def borg_version(borg: str, timeout_s: float = 30.0) -> str | None:
    """`borg --version` ("borg 1.4.5") → "1.4.5"; None when borg is missing or broken."""
    key = _identity(borg)
    if key is not None and key in _versions:
        return _versions[key]
    version = await _ask_version(borg, timeout_s)
    if key is not None and version is not None:
        _versions[key] = version
    return version


async def _ask_version(borg: str, timeout_s: float) -> str | None:
    try:
        proc = await asyncio.create_subprocess_exec(
            borg,
            "--version",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C to our process group is ours to handle, not borg's
        )
    except OSError as e:
        log.warning("borg is not runnable: %s", e, extra={"borg": borg})
        return None
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        log.warning("borg --version did not answer", extra={"borg": borg})
        return None
    words = out.decode(errors="replace").split()
    if proc.returncode != 0 or not words:
        log.warning("borg --version failed", extra={"borg": borg, "exit_code": proc.returncode})
        return None
    return words[-1]


async def gather_facts(agent: str, borg: str) -> HostFacts:
    pid = os.getpid()
    return HostFacts(
        agent=agent,
        host=socket.gethostname(),
        pid=pid,
        # With the pid, it lets a restarted executor tell its old process from one that reused the pid.
        pid_started_at=processes.started_at(pid),
        borg_version=await borg_version(borg),
        python_version=platform.python_version(),
    )

"""Which borg the executor runs: one `update_borg` installed, else the configured one.

`update_borg` installs each borgbackup version into a venv of its own under the agent's
state directory (`<data dir>/executor-<agent>/borg/<version>-<job>/`) and, only once that
venv's `borg --version` has printed the version asked for, points the link `current`
beside them at it. The link is replaced atomically (a new link renamed over the old), so
a job starting at any moment runs either the old borg or the new one, never a half
installed one; the old venvs stay, so going back is pointing the link at one of them
(or removing it: the executor then runs BORGFLOW_BORG, or the venv's borg, again).

The link wins over BORGFLOW_BORG: an `update_borg` is an admin's later, explicit choice.
Every job reads the executable when it starts, so jobs after an update run the new borg
without an executor restart; jobs already running keep the one they started with.
"""

from __future__ import annotations

import os
from pathlib import Path

from services.executor import hostinfo
from services.executor.records import state_dir

CURRENT = "current"


def borg_root(data_dir: str | Path, agent: str) -> Path:
    """The directory holding the agent's installed borgs and the `current` link."""
    return state_dir(data_dir, agent) / "borg"


def installed_borg(root: Path) -> Path | None:
    """The borg executable `current` points at, None when there is none (or it was removed)."""
    exe = root / CURRENT / "bin" / "borg"
    return exe if os.access(exe, os.X_OK) else None


def switch(root: Path, install: Path) -> None:
    """Point `current` at `install` (a directory in `root`) in one rename."""
    staged = root / f".{CURRENT}.{install.name}"
    staged.unlink(missing_ok=True)
    # Relative, so that the whole data directory may move.
    staged.symlink_to(install.name)
    os.replace(staged, root / CURRENT)


class Borgs:
    """The borg the executor runs now, and its version for heartbeats and started events."""

    def __init__(self, root: Path, configured: str, version: str | None) -> None:
        self.root = root
        self.configured = configured
        """BORGFLOW_BORG, else the venv's borg, else PATH's: used until an update_borg installs one."""
        self.version = version

    def executable(self) -> str:
        installed = installed_borg(self.root)
        return str(installed) if installed is not None else self.configured

    async def refresh(self) -> str | None:
        """Ask the borg in use now for its version (after an update_borg switched it)."""
        self.version = await hostinfo.borg_version(self.executable())
        return self.version

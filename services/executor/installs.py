"""Which borgflow the executor runs: one `update_agent` installed, else the one it was started as.

`update_agent` installs borgflow into a venv of its own under the agent's state directory
(`<data dir>/executor-<agent>/borgflow/<version>-<job>/`) and, once that venv's
`borgflow --version` has answered, points the link `current` beside them at it (in one
rename, as for borg: borgs.switch). The executor then stops taking jobs, lets the ones it
runs end, and replaces itself (execv, same pid) with `current/bin/borgflow executor` and
the arguments it was started with. An executor started later from the original command (a
service manager's restart, a reboot) does the same before it connects: the link wins, as
an admin's later, explicit choice. Removing the link goes back to the original install.

Each venv reuses the packages of the environment that made it (a `.pth` file naming its
site-packages), so an update only downloads what changed: borgflow itself and any
dependency its new version needs that the old environment lacks.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from services.executor.records import state_dir

CURRENT = "current"
PREVIOUS_PTH = "_borgflow_previous.pth"
RELAUNCHED = "BORGFLOW_RELAUNCHED"
"""Set in the environment of a relaunched executor: it never relaunches again at start (no loop)."""


def agent_root(data_dir: str | Path, agent: str) -> Path:
    """The directory holding the agent's installed borgflows and the `current` link."""
    return state_dir(data_dir, agent) / "borgflow"


def installed_borgflow(root: Path) -> Path | None:
    """The `borgflow` executable `current` points at, None when there is none."""
    exe = root / CURRENT / "bin" / "borgflow"
    return exe if os.access(exe, os.X_OK) else None


def running_from(exe: Path, interpreter: str = sys.executable) -> bool:
    """Whether `interpreter` is the one of the venv `exe` belongs to (the link resolved)."""
    try:
        return Path(interpreter).parent.resolve() == exe.parent.resolve()
    except OSError:
        return False


def relaunch_target(root: Path, interpreter: str = sys.executable) -> Path | None:
    """The installed borgflow to become, None when there is none or it is the one running."""
    exe = installed_borgflow(root)
    if exe is None or running_from(exe, interpreter):
        return None
    return exe


def site_packages_of_this_environment() -> list[str]:
    """The site-packages directories this interpreter imports from, in order (its .pth ones included)."""
    return [p for p in sys.path if p.endswith(("site-packages", "dist-packages")) and os.path.isdir(p)]


def relaunch(exe: Path, argv: list[str]) -> None:
    """Become `exe` with `argv` (never returns; OSError when the exec fails)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.environ[RELAUNCHED] = str(exe)
    os.execv(exe, [str(exe), *argv])
